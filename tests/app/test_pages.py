"""The explorer in AppTest: every page opens on the default model, numbers equal the library's for the
same inputs, widgets drive what they claim, the URL reproduces a view, cached models stay unhooked."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from tests.app.conftest import assert_clean, default_model_name, figures, open_page, selection

PAGES = [
    "views/model_prompt.py",
    "views/patching.py",
    "views/circuit.py",
    "views/feature_circuit.py",
    "views/heads.py",
    "views/features.py",
    "views/training_runs.py",
]

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("page", PAGES)
def test_every_page_opens_without_error(page, app_model):
    at = open_page(page)
    assert_clean(at)
    assert selection(at).model == default_model_name()
    assert all(not hp.fwd_hooks and not hp.bwd_hooks for hp in app_model.hook_dict.values())


def test_model_page_predictions_and_metric_equal_the_library(app_model):
    from circuitkit.predict import top_predictions
    from circuitkit.tasks import make_task
    from circuitkit.tasks.metrics import logit_diff

    at = open_page(task="ioi", example=3, k=7)
    assert_clean(at)
    data = make_task("ioi", app_model.tokenizer, 16, seed=0, split="heldout")
    prompt = data.prompts[3]
    pred = top_predictions(app_model, prompt, 7)
    table = at.dataframe[1].value  # [0] is the card's task scores
    assert table["token"].tolist() == [t for t, _, _ in pred.top]
    np.testing.assert_allclose(table["probability"], [p for _, p, _ in pred.top], rtol=1e-5)
    with torch.no_grad():
        logits = app_model(data.clean_tokens[3:4])
    ld = float(logit_diff(logits, data.answer_ids[3:4], data.wrong_ids[3:4])[0])
    (metric,) = [m for m in at.metric if m.label.startswith("logit(")]
    assert float(metric.value) == pytest.approx(ld, abs=1e-3)
    # The slider drives the number of predictions, and the URL follows.
    at.slider(key="k").set_value(4).run()
    assert (len(at.dataframe[1].value) == 4 and at.query_params["k"] == ["4"]) or at.query_params["k"] == "4"


def test_typed_prompt_and_answer_pair(app_model):
    from circuitkit.tasks.metrics import logit_diff

    prompt = "When Mary and John went to the store, John gave a drink to"
    at = open_page(source="typed", prompt=prompt)
    assert_clean(at)
    tokens = app_model.to_tokens(prompt)
    ids = [app_model.tokenizer.encode(w, add_special_tokens=False)[0] for w in (" Mary", " John")]
    with torch.no_grad():
        ld = float(logit_diff(app_model(tokens), torch.tensor([ids[0]]), torch.tensor([ids[1]]))[0])
    (metric,) = [m for m in at.metric if m.label.startswith("logit(")]
    assert float(metric.value) == pytest.approx(ld, abs=1e-3)
    at.text_input(key=f"wrong_{prompt}").set_value(" Mary Ann").run()
    assert any("single tokens" in e.value for e in at.error)


def test_patching_run_shows_the_library_scores_and_family_follows_the_url(app_model):
    from circuitkit.patching.activation import activation_patching
    from circuitkit.tasks import make_task

    # A view with no stored result: the Run button computes it with the library.
    at = open_page("views/patching.py", family="resid_pre", n=4)
    assert at.selectbox(key="family").value == "resid_pre"
    at.button(key="run_patching").click().run()
    assert_clean(at)
    data = make_task(selection(at).task, app_model.tokenizer, 4, seed=0, split="heldout")
    r = activation_patching(app_model, data.clean_tokens, data.corrupted_tokens, data.metric, "resid_pre")
    (fig,) = [f for f in figures(at) if f.data[0].type == "heatmap"]
    np.testing.assert_allclose(np.asarray(fig.data[0].z), (r.scores - r.baseline_target).numpy(), atol=1e-5)
    assert len(fig.data[0].x) == data.clean_tokens.shape[1]
    # Switching the family redraws a layer x head grid (stored, or computed on Run).
    at.selectbox(key="family").set_value("head").run()
    if "run_patching" in [b.key for b in at.button]:
        at.button(key="run_patching").click().run()
    assert_clean(at)
    (fig,) = [f for f in figures(at) if f.data[0].type == "heatmap"]
    assert np.asarray(fig.data[0].z).shape == (app_model.cfg.n_layers, app_model.cfg.n_heads)


def test_stored_results_are_drawn_as_stored_with_their_correlation():
    from app import data
    from circuitkit.evaluation import pearson

    model, task = "ck-6l", "ioi"
    stored = {
        m: data.find_result(
            model=model, task=task, method=m, family="head", direction="denoising", n_prompts=32
        )
        for m in ("activation", "atp")
    }
    if any(v is None for v in stored.values()):
        pytest.skip("no precomputed ck-6l results (python -m app.precompute)")
    at = open_page("views/patching.py", model=model, task=task, method="atp", family="head", n=32)
    assert_clean(at)
    heat = next(f for f in figures(at) if f.data[0].type == "heatmap")
    np.testing.assert_allclose(np.asarray(heat.data[0].z), stored["atp"].grid("head").numpy())
    r = pearson(stored["atp"].grid("head"), stored["activation"].grid("head"))
    assert {m.label: m.value for m in at.metric}["Pearson r"] == f"{r:.3f}"
    scatter = next(f for f in figures(at) if f.data[0].type == "scatter")
    assert f"r = {r:.3f}" in scatter.layout.title.text


def test_circuit_slider_sets_the_circuit_size(app_model):
    at = open_page("views/circuit.py", k_heads=5)
    assert_clean(at)
    graph = next(f for f in figures(at) if f.layout.title.text.startswith("Top 5"))
    drawn = [label for t in graph.data if t.customdata is not None for label, _ in t.customdata]
    symbols = [s for t in graph.data if t.customdata is not None for s in t.marker.symbol]
    # Found nodes are true or false positives; the rest drawn are misses.
    assert sum(s != "circle-open" for s in symbols) == 5
    metrics = {m.label: m.value for m in at.metric}
    assert int(metrics["true positives"]) + int(metrics["false positives"]) == 5
    at.slider(key="k_heads").set_value(2).run()
    graph = next(f for f in figures(at) if f.layout.title.text.startswith("Top 2"))
    assert (
        sum(s != "circle-open" for t in graph.data if t.customdata is not None for s in t.marker.symbol) == 2
    )
    # The node picker draws that head's attention pattern from the model.
    at.selectbox(key="node").set_value("L1H2").run()
    att = next(f for f in figures(at) if "L1H2 attention" in (f.layout.title.text or ""))
    z = np.asarray(att.data[0].z)
    np.testing.assert_allclose(z.sum(-1), 1.0, atol=1e-4)
    assert len(drawn) >= 5


def test_feature_circuit_shows_the_library_scores_and_opens_a_latent(app_model, dictionary_dir):
    from app import state
    from circuitkit.features import attribute_nodes
    from circuitkit.tasks import make_task

    at = open_page("views/feature_circuit.py", fc_method="relp", fc_k=12)
    assert_clean(at)
    at.multiselect(key="fc_dicts").set_value([str(dictionary_dir)]).run()
    at.button(key="fc_run").click().run()
    assert_clean(at)
    data = make_task(selection(at).task, app_model.tokenizer, 16, seed=0, split="heldout")
    sae = state.dictionary(str(dictionary_dir), str(app_model.cfg.device))
    want = attribute_nodes(
        app_model,
        data.clean_tokens,
        data.corrupted_tokens,
        data.metric,
        {str(dictionary_dir): sae},
        method="relp",
    ).table()
    want = want.reindex(want["score"].abs().sort_values(ascending=False).index).head(12)
    shown = next(d.value for d in at.dataframe if "latent" in d.value.columns)
    assert shown["latent"].tolist() == want["latent"].tolist()
    np.testing.assert_allclose(shown["score"], want["score"], rtol=1e-5, atol=1e-7)
    graph = next(f for f in figures(at) if f.layout.title.text.startswith("Top 12 latent"))
    assert sum(len(t.customdata) for t in graph.data if t.customdata is not None) == 12
    # Picking a latent node draws its dashboard: the library's top-activating contexts.
    from circuitkit.features import dashboard as dash

    first = next(lat for lat in shown["latent"] if lat >= 0)
    at.selectbox(key="fc_node").set_value(f"test-sae #{first}").run()
    assert_clean(at)
    tokens = dash.corpus_tokens(app_model, n_seqs=128, seq_len=32)
    s = dash.summarize_latent(app_model, dash.encode_tokens(app_model, sae, tokens), tokens, int(first))
    assert s.examples  # the test dictionary's positive encoder bias makes its latents fire
    ex = next(f for f in figures(at) if f.layout.title.text == "Top-activating examples")
    z = np.asarray(ex.data[0].z, dtype=float)
    np.testing.assert_allclose(z[0, : len(s.examples[0][1])], s.examples[0][1], rtol=1e-5)
    assert all(not hp.fwd_hooks and not hp.bwd_hooks for hp in app_model.hook_dict.values())


def test_heads_page_shows_the_library_ranking(app_model):
    from circuitkit.heads import HeadIdConfig, identify_heads
    from circuitkit.tasks import make_task

    # Settings with nothing stored: the button runs the library on 8 prompts.
    at = open_page("views/heads.py", n_prompts=8, n_train=4, seed=1)
    at.button[0].click().run()
    assert_clean(at)
    task = selection(at).task
    data = make_task(task, app_model.tokenizer, 8, seed=0, split="heldout")
    want = identify_heads(app_model, data, HeadIdConfig(n_train_prompts=4, seed=1)).table("node")
    shown = next(d.value for d in at.dataframe if "rank" in d.value.columns)
    merged = shown.merge(want, on="component", suffixes=("_app", "_lib"))
    assert len(merged) == app_model.cfg.n_layers * app_model.cfg.n_heads
    np.testing.assert_allclose(merged["score_app"], merged["score_lib"])


def test_features_dashboard_and_ablation_equal_the_library(app_model, dictionary_dir):
    from app import state
    from circuitkit.features import dashboard as dash

    at = open_page("views/features.py", dictionary=str(dictionary_dir), n_seqs=64, latent=3)
    assert_clean(at)
    assert at.number_input(key="latent").value == 3
    sae = state.dictionary(str(dictionary_dir), str(app_model.cfg.device))
    tokens = dash.corpus_tokens(app_model, n_seqs=64, seq_len=32)
    acts = dash.encode_tokens(app_model, sae, tokens)
    s = dash.summarize_latent(app_model, acts, tokens, 3)
    ex = next(f for f in figures(at) if f.layout.title.text == "Top-activating examples")
    z = np.asarray(ex.data[0].z, dtype=float)
    for i, (_, a) in enumerate(s.examples):
        np.testing.assert_allclose(z[i, : len(a)], a, rtol=1e-5)
    assert any(m.label == "firing density" and m.value == f"{s.density:.4%}" for m in at.metric)
    # The ablation form: predictions before / after equal the library's intervention.
    at.radio[-1].set_value("ablate")
    at.button[-1].click().run()  # the form's submit button
    assert_clean(at)
    prompt = "When Mary and John went to the store, John gave a drink to"
    toks = app_model.to_tokens(prompt)
    with torch.no_grad():
        before = app_model(toks)[0, -1]
    after = dash.intervene(app_model, sae, toks, 3, mode="ablate")[0, -1]
    want = dash.prediction_change(app_model, before, after)
    shown = at.dataframe[-1].value
    pd.testing.assert_frame_equal(shown.reset_index(drop=True), want, check_exact=False, rtol=1e-5)


def test_training_runs_curves_equal_the_jsonl(runs_dir):
    at = open_page("views/training_runs.py")
    assert_clean(at)
    at.multiselect(key="runs").set_value(["ck-run-a", "ck-run-b"]).run()
    assert_clean(at)
    curves = next(f for f in figures(at) if f.layout.title.text == "Training curves")
    want = pd.read_json(runs_dir / "ck-run-a" / "metrics.jsonl", lines=True)
    loss = next(t for t in curves.data if t.meta == {"run": "ck-run-a", "metric": "loss"})
    np.testing.assert_allclose(np.asarray(loss.y), want["loss"])
    summary = next(d.value for d in at.dataframe if "fvu" in d.value.columns)
    assert summary.set_index("run").loc["ck-run-a", "fvu"] == pytest.approx(want["fvu"].iloc[-1])


def test_a_result_written_by_the_cli_shows_without_another_step(tmp_path, monkeypatch):
    from circuitkit.cli import main
    from circuitkit.results import list_results, load

    out = tmp_path / "cli"
    args = ["discover", "--model", "tiny", "--task", "ioi", "--method", "atp", "--families", "head"]
    assert main([*args, "--n-prompts", "8", "--out", str(out), "--quiet"]) == 0
    (stem,) = list_results(out)
    stored = load(stem)
    monkeypatch.setenv("CIRCUITKIT_RESULTS", str(out))
    # The CLI was given the alias "tiny"; the app asks for "ck-tiny" and still finds it.
    at = open_page("views/patching.py", model="ck-tiny", task="ioi", method="atp", family="head", n=8)
    assert_clean(at)
    heat = next(f for f in figures(at) if f.data[0].type == "heatmap")
    np.testing.assert_allclose(np.asarray(heat.data[0].z), stored.grid("head").numpy())
    # A GradDrop result of the same view is a different question: it does not stand in for AtP*.
    assert main([*args[:-3], "atp*", "--families", "head", "--option", "grad_drop=true", "--n-prompts", "8",
                 "--out", str(out), "--quiet"]) == 0  # fmt: skip
    from app import data

    assert data.find_result(model="ck-tiny", task="ioi", method="atp*", family="head", n_prompts=8) is None
    found = data.find_result(
        model="ck-tiny", task="ioi", method="atp*", family="head", n_prompts=8, options={"grad_drop": "true"}
    )
    assert found is not None and found.provenance.score_kind == "magnitude"
    assert data.find_result(model="ck-tiny", task="ioi", method="atp", ablation="zero", n_prompts=8) is None


@pytest.mark.parametrize(
    ("page", "query", "notice"),
    [
        (None, {"k": 999}, "k=999"),
        ("views/circuit.py", {"k_heads": 0}, "k_heads=0"),
        (None, {"model": "nope"}, "model=nope"),
        ("views/patching.py", {"n": 100000}, "n=100000"),
        ("views/patching.py", {"method": "acdc", "family": "bogus"}, "method=acdc"),
        ("views/features.py", {"latent": 999999}, "latent=999999"),
        (None, {"example": "x"}, "example=x"),
    ],
)
def test_bad_link_values_render_with_a_visible_notice(page, query, notice, dictionary_dir):
    if page == "views/features.py":
        query = {**query, "dictionary": str(dictionary_dir)}
    at = open_page(page, **query)
    assert_clean(at)
    warnings = [w.value for w in at.warning]
    assert any(notice in w and "instead" in w for w in warnings), warnings


def test_typed_prompt_longer_than_the_context_is_refused_with_the_limit(app_model):
    prompt = " the" * (app_model.cfg.n_ctx + 50)
    at = open_page(source="typed", prompt=prompt)
    assert not at.exception
    assert any(f"reads at most {app_model.cfg.n_ctx}" in e.value for e in at.error), [
        e.value for e in at.error
    ]
    assert not at.dataframe or "probability" not in at.dataframe[-1].value.columns
