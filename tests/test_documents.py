"""data.documents: the one versioned-JSON reader behind bundle.json, model_set.json and ONNX manifests.

Each of the three formats is read through its public entry point and must refuse, in one line naming
the file, a NaN, another version of its format and a truncated file.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from caloforge.campaign.model_set import MODEL_SET_FORMAT, ModelSet
from caloforge.deploy.export import MANIFEST_FORMAT, read_manifest
from caloforge.errors import CaloforgeError, CheckpointError, ConfigError
from caloforge.training.bundle import load
from caloforge.training.bundle_format import BUNDLE_FORMAT


def _bundle(folder: Path, text: str) -> Path:
    folder.mkdir(parents=True)
    (folder / "bundle.json").write_text(text)
    return folder


def _file(name: str):
    def write(folder: Path, text: str) -> Path:
        folder.mkdir(parents=True)
        (folder / name).write_text(text)
        return folder / name
    return write


READERS = {  # format, a valid document's entries, where to write it, how to read it, the error type
    "bundle": (BUNDLE_FORMAT, {"kind": "model", "family": "gan"}, _bundle, load, CheckpointError),
    "model set": (MODEL_SET_FORMAT, {"entries": []}, _file("model_set.json"), ModelSet.load, CheckpointError),
    "onnx manifest": (MANIFEST_FORMAT, {"parts": [{"file": "model.onnx"}]}, _file("model.json"), read_manifest,
                      ConfigError),
}


def _refused(reader: str, tmp_path: Path, text: str, match: str) -> str:
    _, _, write, read, error = READERS[reader]
    path = write(tmp_path / "doc", text)
    with pytest.raises(error, match=match) as caught:
        read(path)
    message = str(caught.value)
    assert isinstance(caught.value, CaloforgeError) and "\n" not in message and str(tmp_path) in message
    return message


@pytest.mark.parametrize("reader", READERS)
def test_a_nan_is_refused(reader, tmp_path):
    fmt, entries, *_ = READERS[reader]
    text = json.dumps({"format": fmt, **entries, "value": float("nan")})  # json.dumps writes NaN when asked
    _refused(reader, tmp_path, text, "finite numbers but got NaN")


@pytest.mark.parametrize("reader", READERS)
def test_another_version_of_the_format_is_refused_as_such(reader, tmp_path):
    fmt, entries, *_ = READERS[reader]
    newer = fmt.rpartition("/")[0] + "/2"
    message = _refused(reader, tmp_path, json.dumps({"format": newer, **entries}), "format version 1")
    assert "got version '2'" in message and "another caloforge" in message
    _refused(reader, tmp_path / "other", json.dumps({"format": "something-else/1", **entries}), "something-else/1")


@pytest.mark.parametrize("reader", READERS)
def test_a_truncated_file_is_refused(reader, tmp_path):
    fmt, entries, *_ = READERS[reader]
    text = json.dumps({"format": fmt, **entries})
    _refused(reader, tmp_path, text[: len(text) // 2], "expected valid JSON but could not parse")
