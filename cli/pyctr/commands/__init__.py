from pycontainerd.cli.pyctr.commands import plugins, version

MODULES = [version, plugins]
