"""The feature viewer's web server: `saeflow view`.

A Flask app serving one static page (plain HTML/CSS/JS from static/, no
build step) and a read-only JSON API over a run's viewer data:

- ``GET /api/meta``: models, layers, rankable metrics, which stages were built;
- ``GET /api/headlines?layer=&limit=&offset=&only=&q=``;
- ``GET /api/features?model=&layer=&metric=&limit=&offset=&order=``;
- ``GET /api/feature_info?model=&layer=&id=``.

Bad input gets a 400/404 JSON error, anything unexpected a 500 JSON error with
no stack trace. It binds 127.0.0.1 unless told otherwise.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from flask import Flask, Response, jsonify, request, send_from_directory
from werkzeug.exceptions import HTTPException

from saeflow.viewer.store import ApiError, NoViewerData, RunData, find_run

log = logging.getLogger(__name__)

STATIC = Path(__file__).with_name("static")


def _arg(name: str) -> str | None:
    return request.args.get(name)


def create_app(results: str | Path) -> Flask:
    """The viewer app over one results folder (must hold viewer/manifest.json)."""
    data = RunData(results)
    app = Flask(__name__, static_folder=str(STATIC), static_url_path="/static")
    app.json.sort_keys = False
    # "//etc/passwd" must be a plain 404, not a redirect to a rewritten path.
    app.url_map.merge_slashes = False

    @app.get("/")
    def index() -> Response:
        return send_from_directory(STATIC, "index.html")

    @app.get("/favicon.ico")
    def favicon() -> Response:
        return Response(status=204)

    @app.get("/api/meta")
    def meta() -> Response:
        return jsonify(data.meta())

    @app.get("/api/headlines")
    def headlines() -> Response:
        return jsonify(
            data.headlines(
                _arg("layer"), _arg("limit"), _arg("offset"), _arg("only"), _arg("q")
            )
        )

    @app.get("/api/features")
    def features() -> Response:
        return jsonify(
            data.features(
                _arg("model"),
                _arg("layer"),
                _arg("metric"),
                _arg("limit"),
                _arg("offset"),
                _arg("order"),
            )
        )

    @app.get("/api/feature_info")
    def feature_info() -> Response:
        return jsonify(data.feature_info(_arg("model"), _arg("layer"), _arg("id")))

    @app.errorhandler(ApiError)
    def api_error(err: ApiError):
        return jsonify(error=err.message, status=err.status), err.status

    @app.errorhandler(HTTPException)
    def http_error(err: HTTPException):
        return jsonify(error=err.description, status=err.code), err.code

    @app.errorhandler(Exception)
    def unexpected(err: Exception):
        log.exception("internal error")  # the trace stays in the server's log
        return jsonify(error="internal error", status=500), 500

    @app.after_request
    def headers(resp: Response) -> Response:
        resp.headers["X-Content-Type-Options"] = "nosniff"
        resp.headers["Content-Security-Policy"] = "default-src 'self'"
        resp.headers["Cache-Control"] = "no-store"
        return resp

    return app


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of `saeflow view`."""
    parser.add_argument(
        "--run",
        default=None,
        help="results folder (or workflow folder holding results/); default: the "
        "latest of ./results and ./*/results, by when its viewer data was built",
    )
    parser.add_argument(
        "--host", default="127.0.0.1", help="interface (default 127.0.0.1)"
    )
    parser.add_argument("--port", type=int, default=8765, help="port (default 8765)")


def main(args: argparse.Namespace) -> int:
    """Serve the viewer until interrupted."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    try:
        run = find_run(args.run)
        app = create_app(run)
    except NoViewerData as err:
        print(f"saeflow view: {err}", file=sys.stderr)
        return 2
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        log.warning("serving on %s: reachable from other machines", args.host)
    url = f"http://{args.host}:{args.port}/"
    print(f"saeflow view: {run.resolve()} on {url}", flush=True)
    app.run(host=args.host, port=args.port, threaded=True, use_reloader=False)
    return 0
