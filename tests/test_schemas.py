"""The published JSON Schemas (resources/plan.schema.json, analysis.schema.json): they are valid
2020-12 schemas, every file fluoroplan writes satisfies them when checked by the jsonschema
library alone (as another tool would), damaged documents fail them, and fluoroplan's own
messages name the bad field."""

from __future__ import annotations

import copy
import functools
import json
from importlib import resources

import pytest
from conftest import shared_data
from jsonschema import Draft202012Validator
from phantom_fixtures import small_phantom

from fluoroplan.io.analysis_json import analysis_json
from fluoroplan.io.planfile import BadFileError, load_plan, plan_document
from fluoroplan.io.schemas import SchemaViolation, check
from fluoroplan.planner.propose import plan_case
from fluoroplan.segmentation.analysis import analyze


def _published(name: str) -> Draft202012Validator:
    """A validator built from the schema file as shipped, without fluoroplan's code."""
    text = resources.files("fluoroplan.resources").joinpath(f"{name}.schema.json").read_text()
    schema = json.loads(text)
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema)


@functools.lru_cache(maxsize=1)
def _analysis_doc() -> dict:
    return json.loads(json.dumps(analysis_json(analyze(small_phantom().volume))))


@functools.lru_cache(maxsize=1)
def _plan_doc() -> dict:
    ph = small_phantom()
    return plan_document(plan_case(ph.volume, _analysis_doc(), planner="Dr Schema"))


def test_schemas_are_valid_2020_12():
    for name in ("plan", "analysis"):
        v = _published(name)
        assert v.schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"


def test_written_files_satisfy_the_published_schemas():
    plan = _plan_doc()
    assert plan["trajectories"] and plan["targets"]
    assert list(_published("plan").iter_errors(plan)) == []
    an = _analysis_doc()
    assert an["vertebrae"] and an["screws"] and an["rods"]
    assert list(_published("analysis").iter_errors(an)) == []
    check(plan, "plan")
    check(an, "analysis")


def _set(path, value):
    def damage(d):
        node = d
        for k in path[:-1]:
            node = node[k]
        if value is KeyError:
            del node[path[-1]]
        else:
            node[path[-1]] = value
    return damage


PLAN_DAMAGE = [
    (("trajectories", 0, "entry_lps"), "12,3,4", "entry_lps must be three numbers (mm, LPS)"),
    (("trajectories", 0, "entry_lps"), [1.0, 2.0], "entry_lps must be three numbers"),
    (("trajectories", 0, "contact_lps"), [1.0, "x", 2.0], "contact_lps must be three numbers"),
    (("trajectories", 0, "bullseye", "secondary_deg"), 120.0, "secondary_deg is 120.0, outside"),
    (("trajectories", 0, "bullseye", "text"), "", "bullseye.text is empty"),
    (("trajectories", 0, "working_view", "delta_table_deg"), [1.0], "two numbers (deg)"),
    (("trajectories", 0, "checks", 0, "status"), "fine", "status must be one of"),
    (("trajectories", 0, "needle", "gauge"), 15.5, "gauge must be a whole number"),
    (("trajectories", 0, "edited"), KeyError, "edited is missing"),
    (("trajectories", 0, "cost_terms", "metal"), "high", "cost_terms.metal must be a number"),
    (("targets", 0, "kind"), "tumour", "kind must be one of"),
    (("series", "fingerprint"), 12, "series.fingerprint must be text"),
    (("analysis", "screws", 0, "halo_mm"), "big", "halo_mm must be a number or null"),
    (("procedure_position",), "lateral", "procedure_position must be one of"),
    (("schema",), "fluoroplan.plan/7", "schema must be 'fluoroplan.plan/1'"),
    (("colour",), "red", "the plan has unexpected field(s) ['colour']"),
]


def _refused(name: str, good: dict, path, value) -> tuple[dict, str]:
    """``good`` damaged at ``path``: the published schema refuses it, and so does fluoroplan's
    check; returns the damaged document and fluoroplan's message."""
    doc = copy.deepcopy(good)
    _set(path, value)(doc)
    assert list(_published(name).iter_errors(doc)), "the published schema accepts it"
    with pytest.raises(SchemaViolation) as err:
        check(doc, name)
    return doc, str(err.value)


@pytest.mark.parametrize("path, value, words", PLAN_DAMAGE)
def test_damaged_plans_fail_the_schema_and_name_the_field(path, value, words, tmp_path):
    doc, message = _refused("plan", _plan_doc(), path, value)
    assert words in message
    if path[0] == "trajectories":  # a trajectory is named by its id too
        assert doc["trajectories"][0]["id"] in message
    if path != ("schema",):  # the loader says the same, naming the file
        f = tmp_path / "damaged.json"
        f.write_text(json.dumps(doc))
        with pytest.raises(BadFileError) as err:
            load_plan(f)
        assert words in str(err.value) and "damaged.json" in str(err.value)


ANALYSIS_DAMAGE = [
    (("screws", 0, "tip_lps"), [0.0, 0.0], "screws[0] (", "tip_lps must be three numbers"),
    (("vertebrae", 0, "label"), 3, "vertebrae[0].label", "must be text"),
    (("vertebrae", 0, "kind"), "disc", "vertebrae[0].kind", "must be one of"),
    (("rods", 0, "points_lps"), [], "rods[0].points_lps", ""),
    (("series", "affine_lps"), [[1.0, 0.0]], "series.affine_lps", "4x4 matrix"),
    (("screws", 0, "halo", "loose"), "yes", "halo.loose", "must be true or false"),
    (("metal_threshold_hu",), KeyError, "metal_threshold_hu is missing", ""),
]


@pytest.mark.parametrize("path, value, where, words", ANALYSIS_DAMAGE)
def test_damaged_analyses_fail_the_schema(path, value, where, words):
    _, message = _refused("analysis", _analysis_doc(), path, value)
    assert where in message and words in message


def test_non_finite_numbers_are_named():
    doc = copy.deepcopy(_plan_doc())
    doc["trajectories"][1]["depth_mm"] = float("inf")
    with pytest.raises(SchemaViolation, match=r"trajectories\[1\] \(.*\)\.depth_mm must be a "
                       "finite number"):
        check(doc, "plan")


@pytest.mark.realdata
def test_real_ct_analysis_satisfies_the_schema():
    from fluoroplan.io import load_ct

    path = shared_data("totalseg-abdomen-ct", "ct.nii.gz")
    doc = json.loads(json.dumps(analysis_json(analyze(load_ct(path)))))
    assert doc["vertebrae"]
    assert list(_published("analysis").iter_errors(doc)) == []
