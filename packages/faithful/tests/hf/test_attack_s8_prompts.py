"""Session 8 attack: prompts with ids outside the vocabulary or that are no ints, in faithful.hf and the models."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from faithful.errors import ShapeMismatchError
from faithful.models import CallableModel, ModelError
from faithful.models.base import as_prompts

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from faithful.hf import generate  # noqa: E402

_spec = importlib.util.spec_from_file_location(
    "_faithful_decoders_test_hf", Path(__file__).parents[1] / "decoders" / "test_hf.py"
)
assert _spec is not None and _spec.loader is not None
_tiny = sys.modules.get(_spec.name) or importlib.util.module_from_spec(_spec)
if _spec.name not in sys.modules:
    sys.modules[_spec.name] = _tiny
    _spec.loader.exec_module(_tiny)


@pytest.fixture(scope="module")
def model() -> Any:
    torch.set_num_threads(1)
    return _tiny.tiny_gpt2(0)


@pytest.mark.parametrize("token", [-1, "V", "V+7"])
def test_generate_refuses_a_prompt_id_outside_the_vocabulary(model: Any, token: Any) -> None:
    v = model.get_input_embeddings().num_embeddings
    t = {"V": v, "V+7": v + 7}.get(token, token)
    # before: IndexError "index out of range in self" from the embedding
    with pytest.raises(
        ShapeMismatchError, match=rf"token ids \[{t}\] outside the model's vocabulary 0\.\.{v - 1}"
    ):
        generate(model, [[1, 2], [t]], seed=0, max_new_tokens=2)
    ids = torch.tensor([[0, 3], [t, 4]])
    with pytest.raises(ShapeMismatchError, match="outside the model's vocabulary"):
        generate(model, ids, seed=0, max_new_tokens=2)


def test_generate_checks_ids_under_the_padding_mask_too(model: Any) -> None:
    ids = torch.tensor([[10**6, 3], [5, 4]])  # the model embeds padded positions as well
    mask = torch.tensor([[0, 1], [1, 1]])
    with pytest.raises(ShapeMismatchError, match=r"token ids \[1000000\]"):
        generate(model, ids, attention_mask=mask, seed=0, max_new_tokens=2)
    padded = generate(model, torch.tensor([[0, 3], [5, 4]]), attention_mask=mask, seed=0, max_new_tokens=2)
    listed = generate(model, [[3], [5, 4]], seed=0, max_new_tokens=2, pad_token_id=0)
    assert np.array_equal(np.asarray(padded.tokens), np.asarray(listed.tokens))


def test_generate_refuses_float_ids(model: Any) -> None:
    with pytest.raises(ShapeMismatchError, match="int token ids"):
        generate(model, [[1.5, 2]], seed=0, max_new_tokens=2)  # before: read as [1, 2]
    with pytest.raises(ShapeMismatchError, match="int token ids"):
        generate(model, torch.tensor([[1.0, 2.0]]), seed=0, max_new_tokens=2)


@pytest.mark.parametrize("prompt", [[1.5], [True, 1], [np.float64(2.0)], [torch.tensor(1.0)]])
def test_models_refuse_prompts_that_are_no_int_ids(prompt: list[Any]) -> None:
    m = CallableModel(lambda p: np.zeros((len(p), 3)), 3)
    with pytest.raises(ModelError, match="must hold int token ids"):
        m.start([prompt])  # before: int() made 1.5 token 1 and True token 1


def test_models_take_numpy_and_tensor_int_ids() -> None:
    assert as_prompts([np.array([0, 2]), torch.tensor([1, 2]), [np.int32(1)]], 3) == [[0, 2], [1, 2], [1]]
