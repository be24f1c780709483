"""`mip6mon lab run|crowd|send|down|list`."""
from __future__ import annotations

import sys

from lab.scenario import load_scenario, shipped_scenarios


def command_lab(args) -> int:
    if args.lab_command == "list":
        for name in shipped_scenarios():
            scenario = load_scenario(name)
            print(f"{name:22} {scenario.description}")
        return 0
    if args.lab_command == "run":
        from lab.run import run_scenario
        scenario = load_scenario(args.scenario)
        truth = run_scenario(scenario, args.output, args.seed, progress=f"lab run {scenario.name}")
        total = sum(truth["paths"].values())
        print(f"{scenario.name}: {total} packets, {len(truth['home_bindings'])} home bindings, "
              f"{len(truth['correspondent_bindings'])} correspondent bindings -> {args.output}",
              file=sys.stderr)
        return 0
    if args.lab_command == "crowd":
        from lab.crowd import command_crowd
        truth = command_crowd(args)
        total = sum(truth["paths"].values())
        print(f"{truth['scenario']}: {len(truth['nodes'])} nodes, {total} packets, "
              f"{len(truth['home_bindings'])} home bindings, "
              f"{len(truth['correspondent_bindings'])} correspondent bindings -> {args.output}",
              file=sys.stderr)
        return 0
    if args.lab_command == "send":
        from lab import netns
        scenario = load_scenario(args.scenario)
        return netns.command_send(scenario, args.seed, args.speed)
    if args.lab_command == "down":
        from lab import netns
        return netns.command_down()
    return 2
