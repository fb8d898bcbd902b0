"""The notebook layer in a real kernel, executed headless by nbclient (as nbval and CI do).

One notebook loads the extension and runs ``%%session run`` cells: a session that ends within
its cell (``--wait``), one answered by a slow responder that finishes *between* two cells (the
test pauses between them while the kernel is idle), and one answered by ``%session resume`` in
a later cell. Then:

- the widget state nbclient saved (``store_widget_state=True``) equals what the registry says
  in the last cell, for every session;
- no cell holds output it did not produce (late widget traffic never becomes a cell's output).

The kernel runs this interpreter from a kernelspec written to a temporary folder. To also
check another ipykernel (e.g. 6.29.x, whose thread-output routing differs from 7.x), name the
Python of another environment that has ipykernel, ipywidgets and lupa in
``ALGOCLINE_NB_KERNEL_PYTHONS`` (``os.pathsep``-separated); this checkout is put on its path.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")
pytest.importorskip("ipywidgets")

from jupyter_client.kernelspec import KernelSpecManager  # noqa: E402

pytestmark = pytest.mark.kernel

ROOT = Path(__file__).resolve().parents[1]
GAP = 2.0  # seconds the kernel sits idle between two cells (the slow responder takes 0.5 s)

CELLS = [
    "%load_ext algocline_nb",
    "%%session run --name quick --wait\nreturn 6 * 7",
    "import time\ndef slowbot(prompt):\n    time.sleep(0.5)\n    return 'late ' + prompt.prompt",
    '%%session run --name slow --responder slowbot\nalc.log("info", "asking")\n'
    'local a = alc.llm("ping")\nalc.progress(1, 1, "answered")\nreturn a',
    # GAP here: the slow session finishes while no cell runs
    "x = 1",
    '%%session run --name ask\nlocal a = alc.llm("2+2?", {system = "be brief"})\n'
    'return {answer = a, n = "$x {}"}',
    "%session resume ask 4",
    "%session wait ask --timeout 10",
    "import json\nfrom algocline_nb import default_registry\n"
    "print(json.dumps({s.name: {'state': s.tag.value, 'pauses': s.pauses,"
    " 'llm_calls': s.llm_calls, 'tokens': s.total_tokens, 'events': s.events,"
    " 'value': getattr(s.state, 'value', None)} for s in default_registry().sessions()},"
    " sort_keys=True))",
]
GAP_AFTER = 3  # index of the cell after which the test waits
PYTHONS = [
    sys.executable,
    *filter(None, os.environ.get("ALGOCLINE_NB_KERNEL_PYTHONS", "").split(os.pathsep)),
]


def _kernel_dirs(root: Path, python: str) -> list[str]:
    spec = root / "kernels" / "python3"
    spec.mkdir(parents=True)
    env = {
        "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""),
        "ALC_HOME": str(root / "alc-home"),
        "PYDEVD_DISABLE_FILE_VALIDATION": "1",
    }
    argv = [python, "-Xfrozen_modules=off", "-m", "ipykernel_launcher"]
    spec_json = {
        "argv": [*argv, "-f", "{connection_file}"],
        "display_name": "algocline_nb notebook tests",
        "language": "python",
        "env": env,
    }
    (spec / "kernel.json").write_text(json.dumps(spec_json), encoding="utf-8")
    return [str(spec.parent)]


def _execute(tmp_path: Path, python: str) -> Any:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(src) for src in CELLS]
    ksm = KernelSpecManager(kernel_dirs=_kernel_dirs(tmp_path, python), ensure_native_kernel=False)
    client = nbclient.NotebookClient(
        nb,
        timeout=60,
        kernel_name="python3",
        store_widget_state=True,
        resources={"metadata": {"path": str(tmp_path)}},
        kernel_manager_class=_manager_class(ksm, tmp_path / "ipc"),
    )
    with client.setup_kernel():
        km = client.km
        for index, cell in enumerate(nb.cells):
            client.execute_cell(cell, index)
            if index == GAP_AFTER:
                time.sleep(GAP)
        client.set_widgets_metadata()
    assert km is not None
    assert not asyncio.run(km.is_alive())  # the kernel was shut down
    return nb


def _manager_class(ksm: KernelSpecManager, ipc: Path) -> type[Any]:
    from jupyter_client.manager import AsyncKernelManager

    class Manager(AsyncKernelManager):  # type: ignore[misc]
        def __init__(self, **kwargs: Any) -> None:
            kwargs["kernel_spec_manager"] = ksm
            if len(str(ipc)) < 90:  # IPC sockets: nothing on the network, no ports to race for
                kwargs.update(transport="ipc", ip=str(ipc))
            super().__init__(**kwargs)

    return Manager


def _session_models(nb: Any) -> dict[str, dict[str, Any]]:
    state = nb.metadata.widgets["application/vnd.jupyter.widget-state+json"]["state"]
    models = {}
    for model in state.values():
        s = model["state"]
        if model["model_name"] == "VBoxModel" and s.get("session_name"):
            models[s["session_name"]] = s
    return models


@pytest.mark.parametrize("python", PYTHONS, ids=lambda p: "this-venv" if p == sys.executable else p)
def test_saved_widget_state_matches_the_registry_and_outputs_stay_in_their_cells(
    tmp_path: Path, python: str
) -> None:
    nb = _execute(tmp_path, python)
    outputs = [cell.outputs for cell in nb.cells]

    # every cell holds exactly what it produced
    widget_cells = {1, 3, 5}
    for index, cell_outputs in enumerate(outputs):
        if index in widget_cells:
            assert len(cell_outputs) == 1, (index, cell_outputs)
            (out,) = cell_outputs
            # --wait (cell 1) displays its widget before it waits, then updates that output
            assert out.output_type == ("display_data" if index == 1 else "execute_result")
            assert "application/vnd.jupyter.widget-view+json" in out.data
        elif index in (6, 7):  # %session resume (one call: it shows the end) and %session wait
            assert [o.data["text/plain"] for o in cell_outputs] == [
                'done: {"answer":"4","n":"$x {}"} · tokens 3+1'
            ]
        elif index == len(outputs) - 1:
            assert [o.output_type for o in cell_outputs] == ["stream"]
        else:
            assert cell_outputs == [], (index, cell_outputs)
    texts = {i: outputs[i][0].data["text/plain"] for i in widget_cells}
    paused = "paused (single): q-0"  # each session's state line once it settled
    assert texts == {  # (slow: its responder still sleeps)
        1: "session 'quick': done: 42 · 0 pauses · 0 LLM calls · 0 tokens · 2 events",
        3: f"session 'slow': {paused} \"ping\" · 1 pause · 1 LLM call · 1 token · 5 events",
        5: f"session 'ask': {paused} \"2+2?\" · 1 pause · 1 LLM call · 3 tokens · 4 events",
    }

    truth = json.loads(outputs[-1][0].text)
    assert truth["slow"]["value"] == "late ping"
    assert truth["quick"]["value"] == 42
    models = _session_models(nb)
    assert set(models) == set(truth) == {"quick", "slow", "ask"}
    for name, expected in truth.items():
        saved = models[name]
        assert saved["state"] == expected["state"] == "done", name
        for key in ("pauses", "llm_calls", "tokens", "events"):
            assert saved[key] == expected[key], (name, key)
        assert json.loads(saved["value_json"]) == expected["value"], name
        assert saved["pending"] == [], name
