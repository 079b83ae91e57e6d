"""cluster.yaml is a valid Ray cluster launcher config (Ray's own JSON schema and checks)."""
from __future__ import annotations

from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]


def test_cluster_yaml_validates_against_ray_schema():
    from ray.autoscaler._private.util import prepare_config, validate_config

    config = yaml.safe_load((REPO / "cluster.yaml").read_text())
    # What `ray up` does: fill the provider's defaults, then check schema and node types.
    validate_config(prepare_config(config))  # raises jsonschema.ValidationError when invalid
    gpu_types = [t for t in config["available_node_types"].values() if t["resources"].get("GPU", 0) > 0]
    assert gpu_types, "the cluster needs GPU worker types"
    assert config["docker"]["image"].startswith("rayproject/ray:2.60.0")
    assert any("pip install" in cmd and "lama" in cmd for cmd in config["setup_commands"])


def test_schema_rejects_a_broken_config():
    import jsonschema
    import pytest
    from ray.autoscaler._private.util import prepare_config, validate_config

    config = yaml.safe_load((REPO / "cluster.yaml").read_text())
    config["available_node_types"]["head"]["unexpected_key"] = 1
    with pytest.raises(jsonschema.ValidationError):
        validate_config(prepare_config(config))
