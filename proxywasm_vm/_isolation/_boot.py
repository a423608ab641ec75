"""Entry point of a worker process: ``python .../_boot.py '<json>'``.

The worker runs the parent's own copy of proxywasm_vm, backends included
(loaded from the path in the JSON), whatever is installed in the worker's
interpreter, so both sides always speak the same protocol. Only the runtime and its dependencies (wasmer,
cffi, wasmtime ...) come from the worker's environment.
"""

import importlib.util
import json
import os
import pickle
import sys


def _load_package(name: str, path: str, run_init: bool = True) -> None:
    spec = importlib.util.spec_from_file_location(name, os.path.join(path, "__init__.py"),
                                                  submodule_search_locations=[path])
    if spec is None or spec.loader is None:  # not for a .py path; the worker cannot start without it
        raise ImportError(f"cannot load package {name!r} from {path!r}")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    if run_init:
        spec.loader.exec_module(mod)


def boot() -> None:
    # Running this file put its folder first on sys.path: nothing there may shadow anything.
    here = os.path.dirname(os.path.abspath(__file__))
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != here]
    args = json.loads(sys.argv[1])
    # The package's __init__ imports everything (the Proxy-Wasm host, the CLI's needs ...): the
    # worker only needs the runtime interface, so it skips it and imports submodules directly
    # (a third of the start-up time).
    _load_package("proxywasm_vm", args["package"], run_init=False)

    from proxywasm_vm._isolation._channel import Channel, load_helper

    helper = load_helper()
    if helper is not None:
        helper.lib.pwvm_chan_watch_parent(args["death_fd"])  # exit when the parent goes, even mid-call
    else:
        import threading

        def watch() -> None:
            import select

            select.select([args["death_fd"]], [], [])
            os._exit(70)

        threading.Thread(target=watch, daemon=True, name="pwvm-parent-watch").start()

    from proxywasm_vm._isolation._channel import lane_size, map_shared

    mm = map_shared(args["fd"], args["size"])
    os.close(args["fd"])
    mailbox = args["mailbox"]
    efds = args["efds"]
    chans = [Channel("worker", mm, i * lane_size(mailbox), mailbox, efds[2 * i + 1], efds[2 * i],
                     args["death_fd"], spin=args["spin"]) for i in range(len(efds) // 2)]
    config = pickle.loads(bytes.fromhex(args["config"]))

    from proxywasm_vm._isolation._worker import main

    main(chans, args["backend"], config, args.get("remote"))

if __name__ == "__main__":
    boot()
