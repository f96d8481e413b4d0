"""refiner explain: the trie behind each narrowed wildcard, as text (checked by content) and as
SVG and HTML (checked in headless Chromium: a screenshot's size and colours)."""

from __future__ import annotations

import copy
import importlib.util
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import EXAMPLES
from test_worked_example import AWS_2024_GET

from refiner import explain as explain_module
from refiner.catalog import Catalog
from refiner.cli import main
from refiner.finding import parse_finding
from refiner.pipeline import refine_and_prove
from refiner.policy import load_policy

CATALOG_2024 = Path(__file__).parent / "fixtures" / "catalog-2024-10-lambda-s3.json"
EXAMPLE = [str(EXAMPLES / "policy.json"), "--unused", str(EXAMPLES / "unused.json"),
           "--catalog", str(CATALOG_2024)]


def explain(capsys, *args: str) -> tuple[int, str, str]:
    code = main(["explain", *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_text_draws_the_worked_example_trie(capsys):
    code, out, _ = explain(capsys, *EXAMPLE)
    assert code == 0
    assert out.count("\ns3:Get*: statement 1 (S3ReadAccess); ") == 1  # lambda:Invoke* was kept
    assert "lambda:" not in out
    emitted = re.findall(r"▣ (\S+)  \[safe, emitted", out)
    assert sorted(emitted) == AWS_2024_GET  # every proven entry outlined, nothing else
    assert "└── s3:Get  [unsafe]" in out
    assert "s3:GetBucket  [unsafe]" in out
    assert "✗ s3:GetBucketAcl  [unsafe, unused]" in out
    assert "✗ s3:GetBucketPolicy  [unsafe, unused]" in out  # an unused action with one below
    assert len(re.findall(r"✗ s3:\S+  \[unsafe, unused\]", out)) == 22
    assert "s3:GetMultiRegion  [safe, +4 below]" in out  # below an emitted prefix: one level
    assert "▣ s3:GetDataAccess  [safe, emitted]" in out  # a safe node holding one used action


def test_a_long_run_of_safe_leaves_is_collapsed_with_a_count():
    objects = [f"GetObject{suffix}" for suffix in ("Acl", "Body", "Cors", "Date", "Etag", "Fee",
                                                   "Gist", "Hash")]
    catalog = Catalog({"svc": ["GetBucketAcl", "GetBucketPolicy", "GetObject", *objects]}, "test")
    document = {"Statement": [{"Effect": "Allow", "Action": "svc:Get*", "Resource": "*"}]}
    unused = parse_finding([{"serviceNamespace": "svc", "actions": ["GetBucketAcl"]}], catalog)
    run = refine_and_prove(load_policy(copy.deepcopy(document)), unused, catalog, 20_000)
    (drawn,) = explain_module.explain(run, unused, catalog)
    assert drawn.emitted == ["svc:GetBucketPolicy", "svc:GetObject*"]
    get_object = next(node for node in drawn.root.children if node.emitted == "svc:GetObject*")
    shown = [(node.prefix, node.collapsed, node.hidden) for node in get_object.children]
    assert shown == [("svc:GetObjectAcl", 0, 0), ("svc:GetObjectBody", 0, 0), ("", 6, 6)]
    assert "… 6 more safe (6 actions)" in explain_module.as_text([drawn])


def test_pattern_draws_one_wildcard_even_a_kept_one(capsys):
    code, out, _ = explain(capsys, *EXAMPLE, "--pattern", "S3:LIST*")
    assert code == 0 and "s3:List*: statement 1" in out and "unsafe" not in out.split("\n", 2)[2]
    code, _, err = explain(capsys, *EXAMPLE, "--pattern", "s3:Put*")
    assert code == 2 and "not a wildcard of an Allow statement" in err


def test_nothing_narrowed_says_so(tmp_path, capsys):
    finding = tmp_path / "finding.json"
    finding.write_text('[{"serviceNamespace": "lambda", "actions": ["AddPermission"]}]')
    code, _, err = explain(capsys, str(EXAMPLES / "policy.json"), "--unused", str(finding))
    assert code == 0 and "no wildcard was narrowed" in err


needs_graphviz = pytest.mark.skipif(
    shutil.which("dot") is None or importlib.util.find_spec("graphviz") is None,
    reason="needs Graphviz (pip install 'iam-refiner[explain]' and apt-get install graphviz)")


def screenshot(page: Path, out: Path, width: int, height: int) -> Path:
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        pytest.skip("chromium is not installed (.ci/run installs it)")
    result = subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu",
                             "--hide-scrollbars", f"--screenshot={out}",
                             f"--window-size={width},{height}", page.resolve().as_uri()],
                            capture_output=True, text=True, timeout=120, cwd=out.parent)
    assert result.returncode == 0 and out.exists(), result.stderr[-2000:]
    return out


def colour_counts(png: Path, width: int, height: int) -> dict[str, int]:
    image_module = pytest.importorskip("PIL.Image")
    with image_module.open(png) as image:
        assert image.size == (width, height)
        colours = image.convert("RGB").getcolors(maxcolors=width * height)
    counts = {rgb: n for n, rgb in colours}

    def count(hex_colour: str) -> int:
        return counts.get(tuple(int(hex_colour[i:i + 2], 16) for i in (1, 3, 5)), 0)

    return {name: count(getattr(explain_module, name))
            for name in ("SAFE", "UNSAFE", "UNUSED", "OUTLINE")}


def written(capsys, path: Path, form: str) -> str:
    """The worked example explained in form, written to path."""
    code, _, err = explain(capsys, *EXAMPLE, "--format", form, "-o", str(path))
    assert code == 0, err
    return path.read_text()


@needs_graphviz
def test_svg_shows_safe_and_unsafe_colours_in_chromium(tmp_path, capsys):
    svg = tmp_path / "trie.svg"
    text = written(capsys, svg, "svg")
    assert text.lstrip().startswith("<?xml") and "</svg>" in text
    assert f'fill="{explain_module.SAFE}"' in text and f'fill="{explain_module.UNSAFE}"' in text
    assert text.count(f'stroke="{explain_module.OUTLINE}"') == len(AWS_2024_GET) + 1  # + legend
    width, height = (round(float(v) * 4 / 3) for v in
                     re.search(r'width="([\d.]+)pt" height="([\d.]+)pt"', text).groups())
    png = screenshot(svg, tmp_path / "trie.png", width, height)
    counts = colour_counts(png, width, height)
    assert min(counts.values()) > 200, counts  # every colour is drawn, not just declared
    assert counts["UNUSED"] > counts["OUTLINE"]


@needs_graphviz
def test_html_page_holds_the_picture_and_the_diff(tmp_path, capsys):
    page = tmp_path / "explain.html"
    text = written(capsys, page, "html")
    assert "<svg" in text and "<?xml" not in text and "id='diff'" in text
    assert "<span class='del'>-        &quot;s3:Get*&quot;,</span>" in text
    assert "<span class='add'>+        &quot;s3:GetObject*&quot;,</span>" in text
    png = screenshot(page, tmp_path / "page.png", 1200, 1600)
    counts = colour_counts(png, 1200, 1600)
    assert counts["SAFE"] > 200 and counts["UNSAFE"] > 200, counts
