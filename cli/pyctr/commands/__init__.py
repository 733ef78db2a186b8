from pycontainerd.cmd.pyctr.commands import plugins, version

MODULES = [version, plugins]
