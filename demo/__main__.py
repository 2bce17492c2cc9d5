"""``python -m demo`` (``make demo``): run the whole flow once, print one line per step and a summary.

Exit 0 when every step reached its goal; 1 naming the failed step; 130 on Ctrl-C/SIGTERM.  Every
process and file it made is removed on the way out (``--keep`` leaves the work dir for a look).
"""
from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from demo.flow import STEPS, Flow, StepFailed
from demo.procs import install_signal_handlers

BANNER = """\
Intel GPUs on StarlingX: the whole flow on this machine
  REAL      ansible-playbook + kubectl, sysinv-gpu-conductor, sysinv-gpu-agent and intel-gpu-plugin
            (separate processes), RPC over RabbitMQ (oslo.messaging) or sysinv's ZeroMQ (no broker),
            SQLite via SQLAlchemy, kubelet gRPC over unix sockets, the kubernetes client over HTTP
  EMULATED  no GPU: sysfs/devfs trees (tests/fakes/sysfs.py); no cluster: Kubernetes API server
            (tests/fakes/kube_api.py) and kubelet (tests/fakes/kubelet.py); the DaemonSet
            controller: the demo matches the nodeSelector and starts the plugin itself"""

CLUSTER_BANNER = """\
Intel GPUs on StarlingX: the whole flow on a real local Kubernetes (make demo-cluster)
  REAL      etcd, kube-apiserver, kube-controller-manager, kube-scheduler and kubelet v1.34.1 built
            from Kubernetes' Go modules (RBAC, TLS, admission on), ansible-playbook + kubectl with
            server-side validation, sysinv-gpu-conductor (its own ServiceAccount) and sysinv-gpu-agent,
            RPC over RabbitMQ or sysinv's ZeroMQ, intel-gpu-plugin registered with the real kubelet
  EMULATED  no GPU: sysfs/devfs trees (tests/fakes/sysfs.py); no container engine: kubelet runs
            pods on Kubernetes' own fake CRI runtime, so the plugin pod the DaemonSet controller
            created is run by the demo as a host process with that pod's args"""


@dataclass(frozen=True)
class Outcome:
    step: str
    ok: bool
    seconds: float
    detail: str


def run_steps(flow: Flow, out=sys.stdout, steps=STEPS) -> list[Outcome]:  # type: ignore[no-untyped-def]
    """Run the steps in order, print one line each; stop at the first failure (its Outcome is last)."""
    outcomes: list[Outcome] = []
    for index, (name, title, step) in enumerate(steps, 1):
        print(f"[{index}/{len(steps)}] {title} ...", end="", flush=True, file=out)
        start = time.monotonic()
        try:
            detail, ok = step(flow), True
        except StepFailed as err:
            detail, ok = str(err), False
        except Exception as err:  # noqa: BLE001 - any error fails the step by name
            detail, ok = f"{type(err).__name__}: {err}", False
        took = time.monotonic() - start
        first, _, rest = detail.partition("\n")
        print(f" {'ok' if ok else 'FAILED'} ({took:.2f} s)\n      {first}", file=out, flush=True)
        if rest:
            print("      " + rest.replace("\n", "\n      "), file=out)
        outcomes.append(Outcome(name, ok, took, detail))
        if not ok:
            break
    return outcomes


def summary(outcomes: list[Outcome], total: float, steps=STEPS) -> str:  # type: ignore[no-untyped-def]
    titles = {name: title for name, title, _ in steps}
    width = max(len(t) for t in titles.values())
    rule = "-" * (width + 35)
    lines = [f"{'step':<12} {'what':<{width}} {'result':<7} {'seconds':>8}", rule]
    lines += [f"{o.step:<12} {titles[o.step]:<{width}} {'ok' if o.ok else 'FAILED':<7} {o.seconds:>8.2f}"
              for o in outcomes]
    lines += [rule, f"{'total':<12} {'':<{width}} {'':<7} {total:>8.2f}"]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m demo", description=__doc__)
    parser.add_argument("--cluster", action="store_true",
                        help="run on a real local Kubernetes (built by scripts/build-kube.sh on first use)")
    parser.add_argument("--keep", action="store_true", help="keep the work dir (logs, configs) afterwards")
    parser.add_argument("--transport", choices=("zmq", "amqp"),
                        help="sysinv RPC between agent and conductor: zmq (sysinv's ZeroMQ, no broker) "
                        "or amqp (RabbitMQ); default: amqp when RabbitMQ is reachable at 127.0.0.1:5672, "
                        "else zmq")
    parser.add_argument("--transport-url", help="oslo.messaging URL for amqp (default: RabbitMQ at "
                        "127.0.0.1:5672; fake:/ runs agent and conductor in this process)")
    args = parser.parse_args(argv)
    if args.transport_url and args.transport is None:
        args.transport = "amqp"
    if args.transport == "zmq" and args.transport_url:
        parser.error("--transport-url is for --transport amqp")
    install_signal_handlers()
    root = Path(tempfile.mkdtemp(prefix="intel-gpu-demo-"))
    steps = STEPS
    if args.cluster:
        from demo.cluster_flow import CLUSTER_STEPS, ClusterFlow

        steps = CLUSTER_STEPS
        print(CLUSTER_BANNER)
        flow: Flow = ClusterFlow(root, transport_url=args.transport_url, transport=args.transport)
    else:
        print(BANNER)
        flow = Flow(root, transport_url=args.transport_url, transport=args.transport)
    print(f"  work dir  {root}{' (kept)' if args.keep else ' (removed at the end)'}\n")
    start = time.monotonic()
    outcomes: list[Outcome] = []
    code = 1
    try:
        outcomes = run_steps(flow, steps=steps)
        code = 0 if outcomes and all(o.ok for o in outcomes) and len(outcomes) == len(steps) else 1
    except KeyboardInterrupt as err:
        print(f"\ninterrupted ({err or 'Ctrl-C'}): cleaning up", file=sys.stderr)
        code = 130
    finally:
        flow.close()
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    print("\n" + summary(outcomes, time.monotonic() - start, steps=steps))
    if code == 0:
        print(f"\nOK: {flow.allocatable_line()}; RPC over {flow.transport_name()}; every process "
              f"stopped, work dir {'kept' if args.keep else 'removed'}.")
    elif code == 1 and outcomes:
        print(f"\nFAILED at step '{outcomes[-1].step}'; logs of the programs were in {root}/logs"
              f"{'' if args.keep else ' (rerun with --keep to look at them)'}", file=sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main())
