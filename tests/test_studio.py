"""The studio's server (issue 16) through its JSON API, in process: forms checked at the boundary, bad input as
messages, runs that keep to themselves, cancel, progress, and a config.yaml that reproduces the run with sample.py.
The page itself is driven in tests/test_studio_browser.py."""

from __future__ import annotations

import base64
import io
import shlex
import subprocess
import sys
import threading
import time
import zipfile

import numpy as np
import pytest
from PIL import Image

from sampling import cli
from sampling.checkpoint import load_model
from sampling.checks import InputError
from studio import app as studio_app
from studio.forms import hydra_text, parse_form
from studio.runs import Studio
from tests.runner import ROOT

testclient = pytest.importorskip("starlette.testclient")
SAMPLERS = ("ddim", "ddpm")


def data_url(array: np.ndarray) -> str:
    buf = io.BytesIO()
    Image.fromarray(array.astype(np.uint8)).save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def picture(size: int = 16) -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (size, size, 3))


def box_mask(size: int = 16, lo: int = 4, hi: int = 10) -> np.ndarray:
    m = np.zeros((size, size, 3))
    m[lo:hi, lo:hi] = 255
    return m


@pytest.fixture(scope="module")
def client(tiny_ckpts, tmp_path_factory):
    studio = Studio(load_model(str(tiny_ckpts["cond"])), str(tiny_ckpts["cond"]), tmp_path_factory.mktemp("runs"))
    with testclient.TestClient(studio_app.make_app(studio)) as c:
        yield c


def submit(client, form: dict) -> dict:
    r = client.post("/api/runs", json=form)
    assert r.status_code == 201, r.json()
    return r.json()


def follow(client, status: dict) -> dict:
    while status["state"] not in ("done", "error", "cancelled"):
        status = client.get(f"/api/runs/{status['id']}?wait=10&after={status['version']}").json()
    return status


def png(client, status: dict, name: str) -> np.ndarray:
    r = client.get(f"/api/runs/{status['id']}/files/{name}")
    assert r.status_code == 200
    return np.array(Image.open(io.BytesIO(r.content)).convert("RGB")).astype(int)


@pytest.mark.parametrize("text", ['a "quoted" = [x], y', "back\\slash", "ends in \\", 'x\\"y', "it's", "naïve ∑ 🙂",
                                  "key=value", "", "  spaced  "])
def test_text_reaches_the_config_exactly(text):
    cfg = cli.compose_config("sample", ["ckpt=x", f"prompt={hydra_text(text)}"])
    assert cfg.prompt == text


def test_text_with_an_interpolation_is_refused():
    with pytest.raises(InputError, match="interpolation"):
        hydra_text("${oc.env:HOME}")


@pytest.mark.parametrize("form, match", [
    ({"tab": "nope"}, "unknown tab"),
    ({"tab": "generate", "strength": 0.5}, "takes no 'strength'"),
    ({"tab": "generate", "n": "3.5"}, "whole number"),
    ({"tab": "generate", "n": True}, "whole number"),
    ({"tab": "generate", "guidance": "nan"}, "finite"),
    ({"tab": "generate", "sampler": "euler"}, "sampler must be one of"),
    ({"tab": "anagram", "views": ["identity", "spin"]}, "view must be one of"),
    ({"tab": "outpaint", "pad": [1, 2]}, "left, top, right, bottom"),
    ({"tab": "inpaint", "method": "repaint", "sampler": "ddim"}, "choose sampler ddpm"),
    ({"tab": "inpaint", "image": "data:image/png;base64,AAAA"}, "not a readable image"),
    ({"tab": "inpaint", "image": "/etc/passwd"}, "expected an image"),
])
def test_forms_are_checked_at_the_boundary(form, match):
    with pytest.raises(InputError, match=match):
        parse_form(form, SAMPLERS)


def test_repaint_runs_ddpm_resampling():
    form = parse_form({"tab": "inpaint", "method": "repaint"}, SAMPLERS)
    assert "sampler=ddpm" in form.overrides and "task.resamples=5" in form.overrides
    form = parse_form({"tab": "inpaint", "method": "replacement", "resamples": 4}, SAMPLERS)
    assert "task.resamples=1" in form.overrides and "task.resamples=4" not in form.overrides


def test_info_describes_the_model(client):
    info = client.get("/api/info").json()
    assert (info["cond"], info["num_classes"], info["size"], info["channels"]) == ("label", 4, 16, 3)
    assert "ddim" in info["samplers"] and not any(s.startswith("flow_") for s in info["samplers"])
    sample = client.get("/api/sample/3.png")
    assert Image.open(io.BytesIO(sample.content)).size == (16, 16)


def test_inpaint_keeps_the_known_region_and_its_config_reproduces_it(client, tmp_path):
    image, mask = picture(), box_mask()
    status = follow(client, submit(client, {"tab": "inpaint", "label": 1, "image": data_url(image),
                                            "mask": data_url(mask), "n": 2, "steps": 8}))
    assert status["state"] == "done", status["message"]
    assert (status["step"], status["steps"], status["progress"]) == (8, 8, 1.0)
    inside = mask[..., 0] > 0
    out = png(client, status, "sample_0001.png")
    assert np.array_equal(out[~inside], image[~inside])
    assert np.abs(out[inside] - image[inside]).mean() > 4
    # the bundle unpacked + the command in its config.yaml = the same pictures from sample.py
    r = client.get(f"/api/runs/{status['id']}/bundle.zip")
    zipfile.ZipFile(io.BytesIO(r.content)).extractall(tmp_path)
    folder = tmp_path / status["id"]
    command = (folder / "config.yaml").read_text().splitlines()[1].removeprefix("#   ")
    assert command.startswith("python sample.py ") and "image=input_image.png" in command
    args = shlex.split(command)[2:]
    proc = subprocess.run([sys.executable, str(ROOT / "sample.py"), *args], cwd=folder, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    for name in ("sample_0000.png", "sample_0001.png", "inpaint.png"):
        assert (folder / name).read_bytes() == (folder / "rerun" / name).read_bytes(), name


def test_bad_input_is_a_message_and_the_server_goes_on(client):
    image = data_url(picture())
    r = client.post("/api/runs", json={"tab": "sdedit", "image": image, "strength": 2})
    assert r.status_code == 400 and "task.strength must be a finite number in [0, 1]" in r.json()["error"]
    r = client.post("/api/runs", content=b"{not json")
    assert r.status_code == 400 and "not JSON" in r.json()["error"]
    runs = {  # found when the task starts: the run ends in an error the page shows
        "label-conditioned: it takes label=<class>": {"tab": "generate", "prompt": "a red circle", "n": 1},
        "the mask is empty": {"tab": "inpaint", "image": image, "mask": data_url(np.zeros((16, 16, 3)))},
        "mask is 8x8, the image is 16x16": {"tab": "inpaint", "image": image, "mask": data_url(box_mask(8, 2, 5))},
        "label must be an integer in [0, 3]": {"tab": "inpaint", "image": image, "mask": data_url(box_mask()),
                                               "label": 9},
    }
    for message, form in runs.items():
        status = follow(client, submit(client, {**form, "steps": 2}))
        assert status["state"] == "error" and message in status["message"], status
    assert follow(client, submit(client, {"tab": "generate", "n": 1, "steps": 2}))["state"] == "done"


def test_a_label_for_a_text_model_is_a_message(text_ckpt, tmp_path):
    studio = Studio(load_model(str(text_ckpt)), str(text_ckpt), tmp_path)
    with testclient.TestClient(studio_app.make_app(studio)) as c:
        status = follow(c, submit(c, {"tab": "generate", "label": 2, "n": 1, "steps": 2}))
        assert status["state"] == "error" and "text-conditioned; it takes a prompt" in status["message"]
        status = follow(c, submit(c, {"tab": "generate", "prompt": "a red circle", "n": 1, "steps": 2}))
        assert status["state"] == "done"


def test_two_runs_at_once_keep_their_own_results(client):
    forms = [{"tab": "generate", "n": 2, "steps": 40, "seed": s, "label": s} for s in (1, 2)]
    together: list = [None, None]

    def go(i):
        together[i] = follow(client, submit(client, forms[i]))

    threads = [threading.Thread(target=go, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    alone = [follow(client, submit(client, f)) for f in forms]
    grids = [[png(client, s, "grid.png") for s in pair] for pair in (together, alone)]
    assert np.array_equal(grids[0][0], grids[1][0]) and np.array_equal(grids[0][1], grids[1][1])
    assert not np.array_equal(grids[0][0], grids[0][1])


def test_cancel_stops_between_steps_with_progress_and_preview(client):
    status = submit(client, {"tab": "generate", "n": 4, "steps": 1000, "label": 0})
    while status["step"] < 3:
        status = client.get(f"/api/runs/{status['id']}?wait=10&after={status['version']}").json()
    assert status["state"] == "running" and status["steps"] == 1000 and 0 < status["progress"] < 0.5
    preview = client.get(f"/api/runs/{status['id']}/preview.png")
    assert preview.status_code == 200 and Image.open(io.BytesIO(preview.content)).size[0] > 16
    client.post(f"/api/runs/{status['id']}/cancel")
    status = follow(client, status)
    assert status["state"] == "cancelled" and status["step"] < 1000
    assert follow(client, submit(client, {"tab": "generate", "n": 1, "steps": 2}))["state"] == "done"


def test_only_a_runs_own_files_are_served(client):
    status = follow(client, submit(client, {"tab": "generate", "n": 1, "steps": 2}))
    assert client.get(f"/api/runs/{status['id']}/files/grid.png").status_code == 200
    for name in ("..%2F..%2Fconfig.yaml", "%2Fetc%2Fpasswd", "nothing.png"):
        assert client.get(f"/api/runs/{status['id']}/files/{name}").status_code == 404
    assert client.get("/api/runs/ffffffffffff").status_code == 404


def test_the_observer_sees_every_pass_and_can_stop_it(tiny_ckpts, tmp_path):
    studio = Studio(load_model(str(tiny_ckpts["cond"])), str(tiny_ckpts["cond"]), tmp_path)
    overrides = ["task=diffedit", "image=procedural:1", "task.source=0", "task.target=1", "sampler.steps=10"]
    cfg, job, task = studio.compose(overrides)
    seen = []
    job.observer = lambda i, n, x_t, x0: seen.append((i, n))
    task(job)
    assert seen == [(i, 5) for i in range(5)] * 2  # encoding then decoding, 0.5 x 10 steps each

    def stop(i, n, x_t, x0):
        if i == 2:
            raise KeyboardInterrupt

    cfg, job, task = studio.compose(["task=generate", "n=1", "sampler.steps=10"])
    job.observer = stop
    with pytest.raises(KeyboardInterrupt):
        task(job)


def test_the_server_binds_loopback_unless_host_is_given(monkeypatch, tiny_ckpts, capsys):
    assert studio_app.bind_host("127.0.0.1", explicit=False) == "127.0.0.1"
    assert studio_app.bind_host("::1", explicit=False) == "::1"
    with pytest.raises(InputError, match="without an explicit host="):
        studio_app.bind_host("0.0.0.0", explicit=False)
    assert studio_app.bind_host("0.0.0.0", explicit=True) == "0.0.0.0"
    with pytest.raises(InputError, match="expected an IP address"):
        studio_app.bind_host("example.org", explicit=True)
    served = []
    import uvicorn

    class Server:  # serves nothing: records where it would have listened
        def __init__(self, config):
            self.config, self.started, self.should_exit = config, True, False

        def run(self):
            served.append((self.config.host, self.config.port))

    monkeypatch.setattr(uvicorn, "Server", Server)
    assert studio_app.main([f"ckpt={tiny_ckpts['cond']}", "port=7999"]) == 0
    assert studio_app.main([f"ckpt={tiny_ckpts['cond']}", "host=0.0.0.0"]) == 0
    assert served == [("127.0.0.1", 7999), ("0.0.0.0", 7860)]
    assert "anyone who can reach this machine" in capsys.readouterr().err


@pytest.mark.parametrize("argv, match", [([], "give ckpt="), (["ckpt=missing.ckpt"], "missing.ckpt"),
                                         (["ckpt=x", "port=99999"], "port must be"), (["ckpt=x", "colour=red"],
                                                                                      "unknown setting 'colour'")])
def test_bad_arguments_are_one_line(argv, match, capsys):
    assert studio_app.main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and match in err and err.count("\n") == 1


def test_a_run_reports_its_own_time(client):
    t0 = time.perf_counter()
    status = follow(client, submit(client, {"tab": "generate", "n": 1, "steps": 4}))
    assert 0 < status["seconds"] <= time.perf_counter() - t0


def test_a_run_cancelled_in_the_queue_never_starts(client):
    first = submit(client, {"tab": "generate", "n": 1, "steps": 1000, "label": 0})
    second = submit(client, {"tab": "generate", "n": 1, "steps": 1000, "label": 1})
    assert client.get(f"/api/runs/{second['id']}").json()["state"] == "queued"
    client.post(f"/api/runs/{second['id']}/cancel")
    client.post(f"/api/runs/{first['id']}/cancel")
    first, second = follow(client, first), follow(client, second)
    assert first["state"] == second["state"] == "cancelled" and second["step"] == 0
