from pycontainerd.cli.pyctr.commands import (
    containers,
    content,
    cri,
    images,
    leases,
    namespaces,
    plugins,
    run,
    snapshots,
    tasks,
    version,
)

MODULES = [version, plugins, namespaces, images, content, snapshots, leases, containers, tasks,
           run, cri]
