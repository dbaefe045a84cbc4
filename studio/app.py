"""difflab studio: a local web page to draw strokes and masks, type prompts and watch the edit (README "Studio").

    difflab-studio ckpt=<file> [device=cpu|cuda] [port=7860] [host=127.0.0.1] [out=<folder>] [weights=ema]
    python -m studio ckpt=<file> ...

One Starlette app over a ``Studio`` (studio/runs.py): the page (studio/static) posts a tab's form, follows the
run by long polling (progress, preview), and fetches its files. The server binds 127.0.0.1 unless ``host=`` is
given: a page that runs models must not be reachable from the network by default.
"""

from __future__ import annotations

import ipaddress
import sys
import threading
import time
from pathlib import Path

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from diffusion.illusions import VIEWS
from sampling import cli
from sampling.checkpoint import CheckpointError, load_model
from sampling.checks import InputError
from sampling.settings import check_device
from studio.forms import TABS, parse_form
from studio.runs import Studio

STATIC = Path(__file__).resolve().parent / "static"
# A running run's status is sent at most this often (seconds); the end of a run at once. Every answer makes the
# page repaint, and on a 2-core machine the browser's work comes out of the run's (scripts/benchmark_studio.py).
STATUS_GAP = 0.5
SAMPLERS = sorted(p.stem for p in (cli.CONFIGS / "sampler").glob("*.yaml"))
DEFAULTS = {"ckpt": None, "device": "cpu", "port": 7860, "host": "127.0.0.1", "out": None, "weights": "ema"}


def samplers_for(studio: Studio) -> tuple[str, ...]:
    """The samplers this checkpoint's objective takes: flow_* for flow matching, the others for VP models."""
    flow = studio.model.parametrization.name == "flow"
    return tuple(s for s in SAMPLERS if s.startswith("flow_") == flow)


def error(message: str, status: int = 400) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def make_app(studio: Studio) -> Starlette:
    """The page and its JSON API over ``studio``."""
    samplers = samplers_for(studio)
    model = studio.model

    async def index(request: Request) -> Response:
        return FileResponse(STATIC / "index.html")

    async def info(request: Request) -> Response:
        c, h, w = model.image_shape
        return JSONResponse({
            "ckpt": studio.ckpt, "cond": model.cond_kind, "num_classes": model.num_classes, "channels": c,
            "size": h, "device": studio.base[2].split("=", 1)[1], "samplers": samplers,
            "default_sampler": "flow_euler" if "flow_euler" in samplers else "ddim", "views": list(VIEWS),
            "tabs": [t for t in TABS if t != "diffedit_mask"], "steps": model.schedule.num_timesteps,
            "samples": len(studio.samples),
        })

    async def sample_image(request: Request) -> Response:
        index = request.path_params["index"]
        if index >= len(studio.samples):
            return error(f"sample pictures are 0..{len(studio.samples) - 1}", 404)
        return Response(studio.samples[index], media_type="image/png")

    async def submit(request: Request) -> Response:
        try:
            form = await request.json()
        except ValueError:
            return error("the request is not JSON")
        try:
            run = await run_in_threadpool(lambda: studio.submit(parse_form(form, samplers)))
        except (InputError, CheckpointError) as e:
            return error(str(e))
        return JSONResponse(run.status(), status_code=201)

    def find(request: Request):
        return studio.get(request.path_params["run_id"])

    async def status(request: Request) -> Response:
        run = find(request)
        if run is None:
            return error("no such run", 404)
        try:
            after = int(request.query_params.get("after", -1))
            wait = min(float(request.query_params.get("wait", 0)), 30.0)
        except ValueError:
            return error("after and wait must be numbers")
        # long poll: answer once the run has changed since ``after`` and STATUS_GAP has passed, at its end at
        # once, or after ``wait`` seconds; waited in short slices so that a closed page frees its thread
        start = time.monotonic()

        def ready() -> bool:
            return run.ended() or (run.version > after and time.monotonic() >= start + STATUS_GAP)

        while wait > 0 and not ready() and time.monotonic() < start + wait:
            if await request.is_disconnected():
                break
            await run_in_threadpool(run.wait, ready, 0.5 if run.version <= after else STATUS_GAP / 4)
        return JSONResponse(run.status())

    async def preview(request: Request) -> Response:
        run = find(request)
        png = None if run is None else await run_in_threadpool(run.preview_png)
        if png is None:
            return error("no preview yet", 404)
        return Response(png, media_type="image/png", headers={"Cache-Control": "no-store"})

    async def cancel(request: Request) -> Response:
        run = find(request)
        if run is None:
            return error("no such run", 404)
        run.cancel.set()
        return JSONResponse(run.status())

    async def file(request: Request) -> Response:
        run, name = find(request), request.path_params["name"]
        if run is None or name not in run.files:  # only the run's own outputs: no path ever comes from the URL
            return error("no such file", 404)
        download = request.query_params.get("download") is not None
        return FileResponse(run.folder / name, filename=name if download else None,
                            headers={"Cache-Control": "no-store"})

    async def bundle(request: Request) -> Response:
        run = find(request)
        if run is None or run.state != "done":
            return error("no such finished run", 404)
        data = await run_in_threadpool(run.bundle)
        return Response(data, media_type="application/zip",
                        headers={"Content-Disposition": f'attachment; filename="{run.id}.zip"'})

    routes = [
        Route("/", index),
        Route("/api/info", info),
        Route("/api/sample/{index:int}.png", sample_image),
        Route("/api/runs", submit, methods=["POST"]),
        Route("/api/runs/{run_id}", status),
        Route("/api/runs/{run_id}/preview.png", preview),
        Route("/api/runs/{run_id}/cancel", cancel, methods=["POST"]),
        Route("/api/runs/{run_id}/files/{name}", file),
        Route("/api/runs/{run_id}/bundle.zip", bundle),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ]
    return Starlette(routes=routes)


def bind_host(host, explicit: bool) -> str:
    """The address to serve on: 127.0.0.1 unless ``host=`` was given (``explicit``); a non-loopback address only
    that way."""
    host = str(host)
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        raise InputError(f"host={host}: expected an IP address (127.0.0.1, or 0.0.0.0 to serve the network)") from None
    if not loopback and not explicit:
        raise InputError(f"refusing to serve on {host} without an explicit host=")
    return host


def build(argv: list[str]) -> tuple[Studio, dict, str]:
    """``key=value`` arguments -> (Studio with its model loaded, options, host); InputError on bad ones."""
    given = cli.dotlist_options(argv, DEFAULTS)
    if not given["ckpt"]:
        raise InputError("give ckpt=<file>: the checkpoint the studio samples from")
    host = bind_host(given["host"], explicit=any(a.startswith("host=") for a in argv))
    port = given["port"]
    if not isinstance(port, int) or not 0 <= port <= 65535:
        raise InputError(f"port must be an integer in [0, 65535], got {port!r}")
    device = check_device(str(given["device"]))
    model = load_model(str(given["ckpt"]), given["weights"])
    model.net.to(device)
    root = Path(given["out"] or Path("runs/studio") / time.strftime("%Y-%m-%d_%H-%M-%S"))
    studio = Studio(model, str(given["ckpt"]), root, device=str(device), weights=given["weights"],
                    compute_thread=False)
    return studio, given, host


def main(argv: list[str] | None = None) -> int:
    """``difflab-studio key=value ...``: serve until interrupted; exit status 2 with one ``error:`` line on bad
    arguments."""
    import uvicorn

    try:
        studio, given, host = build(list(sys.argv[1:] if argv is None else argv))
    except (InputError, CheckpointError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if not ipaddress.ip_address("127.0.0.1" if host == "localhost" else host).is_loopback:
        print(f"warning: serving on {host}: anyone who can reach this machine can run the model", file=sys.stderr)
    server = uvicorn.Server(uvicorn.Config(make_app(studio), host=host, port=given["port"], log_level="warning"))
    web = threading.Thread(target=server.run, name="studio-web", daemon=True)
    web.start()
    print(f"difflab studio: http://{host}:{given['port']}/ (runs in {studio.root})", flush=True)
    try:
        studio.compute(running=web.is_alive)  # the models run here, on the main thread (studio/runs.py)
    except KeyboardInterrupt:
        pass
    finally:
        server.should_exit = True
        web.join(timeout=10)
    if not server.started:
        print(f"error: the server could not start on {host}:{given['port']} (see above)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
