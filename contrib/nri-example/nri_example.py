#!/usr/bin/env python3
"""A sample external NRI plugin in Python, built on pycontainerd's NRI stub.

It works with pycontainerd and with containerd (NRI is the same protocol). For every new
container it adds an environment variable and an annotation, and, when the pod carries the
annotation ``nri-example.pycontainerd.io/memory-limit`` (bytes), sets the memory limit.

Run it against a runtime's NRI socket::

    python3 nri_example.py --socket /var/run/nri/nri.sock --idx 50 --name example

or install it as a pre-installed plugin (the runtime starts it, passing the socket as fd 3
and the name/index in NRI_PLUGIN_NAME/NRI_PLUGIN_IDX; its configuration, a JSON object,
comes from /etc/nri/conf.d/50-example.conf or example.conf)::

    install -m 0755 nri_example.py /opt/nri/plugins/50-example
    echo '{"env": {"GREETING": "hello"}}' > /etc/nri/conf.d/50-example.conf
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging

from pycontainerd.core.nri.api import pb
from pycontainerd.core.nri.stub import Stub

log = logging.getLogger("nri-example")

MEMORY_ANNOTATION = "nri-example.pycontainerd.io/memory-limit"


class Example:
    def __init__(self) -> None:
        self.env = {"NRI_EXAMPLE": "1"}

    def configure(self, config: str, runtime_name: str, runtime_version: str) -> str:
        log.info("configured by %s %s", runtime_name, runtime_version)
        if config:
            self.env.update(json.loads(config).get("env", {}))
        return "runpodsandbox,createcontainer,stopcontainer"

    def synchronize(self, pods: list[pb.PodSandbox], containers: list[pb.Container]) -> None:
        log.info("synchronized: %d pods, %d containers", len(pods), len(containers))

    def run_pod_sandbox(self, pod: pb.PodSandbox) -> None:
        log.info("pod %s/%s started", pod.namespace, pod.name)

    def create_container(
        self, pod: pb.PodSandbox, container: pb.Container
    ) -> pb.ContainerAdjustment:
        adj = pb.ContainerAdjustment()
        for key, value in self.env.items():
            adj.env.add(key=key, value=value)
        adj.annotations["nri-example.pycontainerd.io/seen"] = "true"
        limit = pod.annotations.get(MEMORY_ANNOTATION)
        if limit:
            adj.linux.resources.memory.limit.value = int(limit)
        log.info("adjusted container %s in pod %s", container.name, pod.name)
        return adj

    def stop_container(self, pod: pb.PodSandbox, container: pb.Container) -> None:
        log.info("container %s stopped", container.name)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--socket", default="/var/run/nri/nri.sock")
    parser.add_argument("--name", default="example")
    parser.add_argument("--idx", default="50")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s nri-example: %(message)s")
    stub = Stub(Example(), name=args.name, index=args.idx, socket_path=args.socket)
    asyncio.run(stub.run())


if __name__ == "__main__":
    main()
