"""Conductor and agent in THIS process, for when no RabbitMQ is reachable (announced by the demo).

oslo.messaging's ``fake:/`` driver passes messages only between transports of one process, so the
real ``ConductorService`` and ``AgentService`` (the same classes the console scripts run) run here
in two threads on the global ``cfg.CONF`` (oslo.messaging 18 needs the global one), parsed from
the same generated config files the processes would get.  Their logs go to a file, not the screen.
"""
from __future__ import annotations

import logging
import threading
import warnings
from pathlib import Path
from typing import Any


class InProcessServices:
    """``start()`` runs the conductor, waits until it serves, then runs the agent; ``stop()`` ends both."""

    def __init__(self, conductor_conf: Path, agent_conf: Path, log_file: Path) -> None:
        self.files = (conductor_conf, agent_conf)
        self.log_file = log_file
        self.stop_event = threading.Event()
        self.threads: list[threading.Thread] = []
        self.results: dict[str, Any] = {}
        self._handler: logging.Handler | None = None

    def _run(self, name: str, service: Any) -> None:
        try:
            self.results[name] = service.run()
        except Exception as err:  # noqa: BLE001 - reported by alive()/results, not raised in a thread
            self.results[name] = err
            logging.getLogger(__name__).exception("%s failed", name)

    def start(self, ready_timeout: float = 20.0) -> InProcessServices:
        warnings.filterwarnings("ignore", message=r"\s*Eventlet is deprecated")
        from oslo_config import cfg

        from sysinv_ext.cmd import agent as agent_cmd
        from sysinv_ext.cmd import conductor as conductor_cmd

        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        self._handler = logging.FileHandler(self.log_file)
        self._handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        root = logging.getLogger()
        root.addHandler(self._handler)
        root.setLevel(logging.INFO)
        ready = threading.Event()
        conductor_log = logging.getLogger(conductor_cmd.__name__)
        conductor_log.addFilter(lambda record: (ready.set() if "serving topic" in record.getMessage()
                                                else None) or True)

        conf = cfg.CONF
        conductor_cmd.register(conf)
        agent_cmd.register(conf)
        conf(["--config-file", str(self.files[0]), "--config-file", str(self.files[1])],
             project="sysinv-gpu", prog="demo", default_config_files=[])
        conductor = conductor_cmd.ConductorService(conf, self.stop_event)
        self._thread("conductor", conductor)
        if not ready.wait(ready_timeout):
            raise RuntimeError(f"in-process conductor not serving after {ready_timeout:.0f} s "
                               f"(see {self.log_file})")
        self._thread("agent", agent_cmd.AgentService(conf, self.stop_event))
        return self

    def _thread(self, name: str, service: Any) -> None:
        thread = threading.Thread(target=self._run, args=(name, service), name=f"demo-{name}", daemon=True)
        thread.start()
        self.threads.append(thread)

    def alive(self) -> bool:
        return all(t.is_alive() for t in self.threads)

    def stop(self) -> None:
        self.stop_event.set()
        for thread in self.threads:
            thread.join(15)
        from oslo_config import cfg

        cfg.CONF.reset()  # parsed files and overrides; later users of the global CONF start clean
        if self._handler is not None:
            logging.getLogger().removeHandler(self._handler)
            self._handler.close()
