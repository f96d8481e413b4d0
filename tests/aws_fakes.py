"""Real servers on 127.0.0.1 for the live-AWS tests: moto's IAM (and STS) server, and a small
Access Analyzer (which moto lacks) that routes and validates by botocore's own service model."""

from __future__ import annotations

import json
import re
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import botocore.session
from botocore.validate import ParamValidator

OPERATIONS = ("ListAnalyzers", "ListFindingsV2", "GetFindingV2", "GenerateFindingRecommendation",
              "GetFindingRecommendation")


class FakeAccessAnalyzer:
    """The operations refiner uses, served over HTTP as the REST-JSON protocol has them.

    Routes come from each operation's requestUri in botocore's model, and every response is
    checked against the operation's output shape with botocore's validator (as its Stubber
    does), so a fixture that AWS could not send fails the test that uses it. Lists are paged
    `page_size` at a time (nextToken), and every `throttle_every`-th request is answered with
    ThrottlingException (HTTP 429), which clients must retry. An unknown finding id is
    ResourceNotFoundException; the recommendation of an id in `denied` is
    AccessDeniedException; with `gather` (a Barrier), GenerateFindingRecommendation answers
    only once that many requests are in at the same time."""

    def __init__(self, analyzers: list[dict], findings: dict[str, dict],
                 recommendations: dict[str, dict], page_size: int = 2, throttle_every: int = 0):
        self.analyzers, self.findings, self.recommendations = analyzers, findings, recommendations
        self.page_size, self.throttle_every = page_size, throttle_every
        self.requests: list[str] = []
        self.denied: set[str] = set()  # finding ids whose recommendation is AccessDenied
        self.gather: threading.Barrier | None = None  # generate requests must arrive together
        self.throttled = 0
        self._polls: dict[str, int] = {}
        model = botocore.session.get_session().get_service_model("accessanalyzer")
        self._operations = []
        for name in OPERATIONS:
            operation = model.operation_model(name)
            path = re.sub(r"\{(\w+)\}", r"(?P<\1>[^/?]+)", operation.http["requestUri"])
            self._operations.append((operation.http["method"], re.compile(path + "$"), operation))
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def endpoint(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def __enter__(self) -> FakeAccessAnalyzer:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()

    # --- operations ------------------------------------------------------------------------

    def ListAnalyzers(self, query, body, uri):
        kind = query.get("type")
        return {"analyzers": [a for a in self.analyzers if not kind or a["type"] == kind]}

    def ListFindingsV2(self, query, body, uri):
        listed = [f for f in self.findings.values() if _passes(f, body.get("filter", {}))]
        summaries = [{k: f[k] for k in ("id", "resource", "resourceType", "resourceOwnerAccount",
                                        "status", "findingType", "createdAt", "updatedAt",
                                        "analyzedAt")} for f in listed]
        return self._page(summaries, "findings", body.get("nextToken"))

    def GetFindingV2(self, query, body, uri):
        finding = dict(self.findings[uri["id"]])
        page = self._page(finding.pop("findingDetails"), "findingDetails", query.get("nextToken"))
        return {**finding, **page}

    def GenerateFindingRecommendation(self, query, body, uri):
        if self.gather is not None:  # a client asking one finding at a time never gets past
            self.gather.wait(timeout=20)
        self._polls[uri["id"]] = 0
        return {}

    def GetFindingRecommendation(self, query, body, uri):
        polls = self._polls[uri["id"]] = self._polls.get(uri["id"], 0) + 1
        recommendation = self.recommendations[uri["id"]]
        if polls == 1:  # AWS works on it asynchronously: the first answer is IN_PROGRESS
            return {"resourceArn": recommendation["resourceArn"],
                    "recommendationType": "UnusedPermissionRecommendation",
                    "status": "IN_PROGRESS", "startedAt": recommendation["startedAt"]}
        steps = recommendation.get("recommendedSteps", [])
        page = self._page(steps, "recommendedSteps", query.get("nextToken"))
        return {**{k: v for k, v in recommendation.items() if k != "recommendedSteps"}, **page}

    def _page(self, items: list, key: str, token: str | None) -> dict:
        start = int(token or 0)
        page = {key: items[start:start + self.page_size]}
        if start + self.page_size < len(items):
            page["nextToken"] = str(start + self.page_size)
        return page

    # --- HTTP ------------------------------------------------------------------------------

    def _handler(self):
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def do_GET(self):
                self._serve()

            def do_POST(self):
                self._serve()

            def _serve(self):
                parsed = urllib.parse.urlsplit(self.path)
                query = dict(urllib.parse.parse_qsl(parsed.query))
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}")
                fake.requests.append(f"{self.command} {parsed.path}")
                if fake.throttle_every and len(fake.requests) % fake.throttle_every == 0:
                    fake.throttled += 1
                    return self._reply(429, {"message": "Rate exceeded"}, "ThrottlingException")
                for method, path, operation in fake._operations:
                    found = path.match(urllib.parse.unquote(parsed.path))
                    if method == self.command and found:
                        if operation.name == "GetFindingRecommendation" and \
                                found.groupdict().get("id") in fake.denied:
                            return self._reply(403, {"message": "not authorized"},
                                               "AccessDeniedException")
                        try:
                            response = getattr(fake, operation.name)(query, body,
                                                                     found.groupdict())
                        except KeyError as missing:
                            return self._reply(404, {"message": f"no {missing}"},
                                               "ResourceNotFoundException")
                        if operation.output_shape is not None:
                            report = ParamValidator().validate(response, operation.output_shape)
                            if report.has_errors():
                                raise AssertionError(f"{operation.name}: {report.generate_report()}")
                        return self._reply(200, response)
                self._reply(404, {"message": f"no route {self.command} {parsed.path}"},
                            "ResourceNotFoundException")

            def _reply(self, status: int, value: dict, error: str | None = None):
                data = json.dumps(value).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                if error:
                    self.send_header("x-amzn-ErrorType", error)
                self.end_headers()
                self.wfile.write(data)

        return Handler


def _passes(finding: dict, filter_: dict) -> bool:
    return all(finding.get(key) in condition.get("eq", [finding.get(key)])
               for key, condition in filter_.items())
