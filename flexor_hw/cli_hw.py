"""Hardware subcommands of ``flexor-hw`` (build, verify)."""


def add_hw_commands(sub):
    pass
