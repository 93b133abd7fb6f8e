"""Session 9 attack: the vLLM class without vLLM says what it is and what to do (was "No module named 'vllm'")."""

from __future__ import annotations

import importlib.util
import subprocess
import sys

import pytest

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("vllm") is not None, reason="vLLM is importable: the class builds"
)


def test_the_vllm_class_without_vllm_is_a_clear_import_error() -> None:
    import faithful.vllm_plugin as plugin

    with pytest.raises(ModuleNotFoundError, match="needs vLLM") as info:
        plugin.FaithfulLogitsProcessor  # noqa: B018
    assert info.value.name == "vllm" and "--logits-processors" in str(info.value)
    assert "FaithfulLogitsProcessor" not in vars(plugin)  # nothing half-built is kept


def test_from_import_and_the_rest_of_the_module() -> None:
    code = (
        "import sys\n"
        "from faithful.vllm_plugin import request_plan, EXTRA_SPEC\n"
        "assert 'vllm' not in sys.modules\n"
        "try:\n"
        "    from faithful.vllm_plugin import FaithfulLogitsProcessor\n"
        "except ImportError as exc:\n"
        "    print(exc)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "needs vLLM" in out.stdout
