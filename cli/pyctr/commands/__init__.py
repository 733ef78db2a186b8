from pycontainerd.cli.pyctr.commands import (
    content,
    images,
    leases,
    namespaces,
    plugins,
    snapshots,
    version,
)

MODULES = [version, plugins, namespaces, images, content, snapshots, leases]
