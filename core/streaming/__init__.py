"""The CRI streaming server: exec, attach and port-forward over WebSocket and SPDY.

The CRI plugin asks :class:`~pycontainerd.core.streaming.server.StreamServer` for a URL per
Exec/Attach/PortForward request (a single-use token names the cached request) and implements
:class:`~pycontainerd.core.streaming.types.Runtime`; clients (kubelet's apiserver proxy,
kubectl, crictl) connect to the URL and speak Kubernetes' remotecommand / portforward
subprotocols. Modules import lazily: ``from pycontainerd.core.streaming import server``.
"""
