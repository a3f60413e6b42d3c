"""The recipe of a planted built-in model (kept free of heavy imports: the zoo registry imports it)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class PlantedConfig:
    """Recipe of a planted built-in model: architecture, high-level task, SIIT losses, optimisation."""

    name: str
    """Model name in the zoo (also the folder name)."""
    task: str
    """``"ioi"`` or ``"greater_than"``: which high-level model to plant."""
    n_layers: int = 3
    """Transformer blocks."""
    d_model: int = 96
    """Residual stream width."""
    n_heads: int = 4
    """Attention heads per layer."""
    d_mlp: int = 384
    """MLP hidden width (GELU)."""
    n_ctx: int = 64
    """Context length; natural-text rows are this long."""
    tokenizer_from: str = "ck-tiny"
    """Built-in model whose tokenizer is reused (the same BPE, task words single tokens)."""
    init_from: str | None = None
    """Built-in model whose embeddings, first ``n_layers`` blocks and unembedding start the training
    (same widths required); None: random initialisation from ``seed``."""
    steps: int = 1500
    """Optimiser steps."""
    batch: int = 48
    """Task prompts per step (base and source batches each this size)."""
    text_batch: int = 16
    """Rows of natural text added on text steps."""
    text_every: int = 2
    """Every text_every-th step also takes a natural-text next-token loss."""
    p_block: float = 0.0
    """Share of IIT rows whose intervened node's children are frozen at the base run's values (target:
    the base output), training away skip edges; 0: plain IIT."""
    p_freeze: float = 0.0
    """Probability that each non-aligned component is frozen at the base run's value in an IIT row, so
    interventions do not travel through non-aligned relays; 0: plain IIT."""
    p_pair: float = 0.0
    """Share of source rows (IIT and strictness) replaced by the base row's minimal pair (the high-level
    model's ``counterfactual``: IOI's prompt with S2 changed, names kept). Independent sources carry
    names the base prompt lacks, so a non-aligned relay of the repeated name's identity goes unpunished
    by strictness (inhibiting an absent name changes nothing) while clean / corrupted patching, which
    keeps the names, finds it; 0: independent sources only."""
    pair_nodes: tuple[str, ...] | None = None
    """Aligned nodes (names) whose IIT rows may take a minimal-pair source; the other nodes' IIT rows
    always take the independent source, which is what validation's IIA uses (a name mover trained mostly
    on minimal pairs, where the moved name is in the base prompt anyway, fell from 0.95 to 0.76 IIA).
    Strictness takes pairs at ``p_pair`` either way; None: every node."""
    w_behaviour: float = 1.0
    """Weight of the behaviour loss."""
    w_iit: float = 1.0
    """Weight of the interchange-intervention loss."""
    w_strict: float = 1.0
    """Weight of the strictness loss."""
    w_logit: float = 0.0
    """Weight of a logit-matching term on the strict pass: the END logits under resample ablation must
    equal the unablated run's (detached), centred over the tokens the high-level outputs of the batch
    put mass on, squared differences summed over those tokens. The KL to a one-hot target saturates, so
    a non-aligned component may move the logit difference by a tenth of the gap at no cost; this term
    pins it; 0: off."""
    w_logit_diff: float = 0.0
    """Weight of the squared change, under the strict pass's resample ablation, of each row's task logit
    difference (the high-level model's ``logit_pair``: IOI's slot 1 - slot 2 name logits, the metric
    validation normalises), against the unablated run (detached). One number per row where ``w_logit``
    constrains every answer token of the batch; 0: off."""
    w_single: float = 0.0
    """Weight of single-component strictness: each row of an extra pass resample-ablates one non-aligned
    head or MLP (drawn uniformly, at every position, source as in the strict pass) and the squared change
    of its task logit difference (``logit_pair``) from the unablated run (detached) is penalised - the
    very quantity validation bounds at 5 % of the gap. Unlike ``w_logit_diff`` (many components ablated
    at once, their joint effect) a model that routes the task only through aligned nodes can drive it to
    zero; 0: off."""
    single_independent: float = 0.0
    """Share of the single-component strictness rows whose source is an independent prompt (other names:
    validation's resample ablation) rather than the strict pass's source (the minimal pair at ``p_pair``,
    which leaves a head that only relays names unchanged, so its resample effect goes untrained)."""
    single_focus: float = 0.0
    """Share of the single-component strictness picks drawn in proportion to each component's running
    mean squared change of the logit difference (the rest uniform): rows go where an effect is left;
    0: uniform picks."""
    single_mean: bool = False
    """Single-component strictness on each component's mean change over its rows of the batch (squared,
    weighted by its share of rows), validation's quantity, instead of every row's squared change (which
    also penalises scatter that averages out over prompts)."""
    single_soft_mean: bool = False
    """Rows whose high-level answer is a split (IOI's ABC prompts: either name) enter single-component
    strictness through their component's mean change only, the other rows through their own squared
    change. Per-row penalties on split rows reward a confident coin flip - hard attention to one name
    is robust to any one ablation - which session 8 measured: |logit difference| on ABC prompts 0.7 ->
    24 (behaviour KL 0.04 -> 3.0) while every mean-based check passed."""
    single_swap: float = 0.0
    """Share of the single-component strictness rows run the other way round: the source prompt with the
    component taken from the base. With minimal-pair sources this is validation's denoising direction
    (an ABC prompt with a component from the clean one), otherwise rare: only a quarter of base rows are
    ABC; 0: base rows only."""
    single_live: bool = False
    """The single-component change is measured against the unablated run *with* its gradient, not a
    detached copy. Against a detached reference the cheapest way to close a negative change is to grow
    every logit difference (the reference moves up with it next step), so the logits grow (IOI: the
    gap rose from 8.7 to 15.5 in run T1), the changes with them, and the loss with their square: a
    feedback loop, the suspected cause of the collapses of every stronger setting; False: detached."""
    single_relative: bool = False
    """Single-component strictness in shares of the batch's mean unablated task logit difference
    (clamped at 1), squared, as validation counts; scale-free, so its weight is about ``gap**2`` times
    an absolute one's. Uses the reference's gradient when ``single_live``."""
    project_last: bool = False
    """After every optimiser step (and once at the start), project the output weights of the last
    block's non-aligned heads and MLP off the directions along which a residual write moves a logit
    difference between two of the task's answer tokens (``circuitkit.planted.direct``). Their only path
    to the logits is the direct one, so this removes their task effect exactly, up to ``ln_final``'s
    scale; False: left to the losses."""
    project_intermediate: bool = False
    """After every optimiser step (and once at the start), project the output weights of the aligned
    heads that another aligned node reads (IOI: duplicate-token, S-inhibition) off the answer-token
    logit-difference directions (``circuitkit.planted.direct.project_intermediate``): the planted graph
    gives them no direct edge to the logits; False: left to the losses."""
    project_values: bool = False
    """After every optimiser step (and once at the start), project the output weights of every
    non-aligned head and MLP below an aligned head that reads the tokens (IOI's name movers) off that
    head's value read space (``circuitkit.planted.direct.project_value_reads``): the planted edge is
    tokens -> reader, so the reader copies the token from the embedding, not from a non-aligned relay
    (IOI's non-aligned layer-0 heads copied each name at its own position into the name movers'
    values, 7-9 % of the gap each under resample ablation); False: left to the losses."""
    project_values_rate: float = 1.0
    """Share of the value-read part removed at each ``project_values`` call: 1 removes it at once, a
    small rate decays it geometrically over the steps so the circuit can re-route to the planted edge."""
    project_values_mlps: bool = True
    """``project_values`` applies to the MLPs below the token readers too, not only the heads."""
    w_sink: float = 0.0
    """Weight of a loss that sends the attention of every non-aligned head below a token reader (IOI:
    layers 0-1, under the name movers), at the named positions ``sink_positions``, to BOS (position 0:
    the same residual in every prompt), so that their output there does not depend on the prompt.
    Session 9 measured IOI's three free layer-0 heads attending to themselves at the name positions,
    relaying each name into the name movers' values (7-9 % of the gap each under resample ablation);
    forcing the relay out of the weights at once (``project_values``) collapsed training. Cross-entropy
    of the pattern's BOS entry, mean over heads and positions; 0: off."""
    sink_positions: tuple[str, ...] = ()
    """Named positions (the high-level model's ``positions``) where ``w_sink`` applies."""
    w_text: float = 1.0
    """Weight of the natural-text next-token loss."""
    p_strict: float = 0.25
    """Probability that each non-aligned component is resample-ablated in a row of the strict pass."""
    p_strict_max: float | None = None
    """If set, each row of the strict pass draws its ablation probability uniformly from
    [p_strict, p_strict_max] (rows ablating nearly every non-aligned component defeat redundant copies
    of the task signal); None: every row uses p_strict."""
    p_strict_mlp: float | None = None
    """The same probability for MLPs; None: ``p_strict``."""
    strict_start: int = 0
    """Curriculum: the strictness loss is off before this step (behaviour and IIT train alone)."""
    strict_ramp: int = 0
    """Curriculum: steps over which the strictness weight then rises linearly from 0 to ``w_strict``."""
    w_attn: float = 0.0
    """Weight of an auxiliary loss on the aligned heads' attention patterns at their positions (cross-
    entropy to the high-level model's ``attention_targets``, on the behaviour pass); 0: off."""
    iit_node_weights: tuple[float, ...] | None = None
    """Relative frequency with which each aligned node (high-level model's order) is the IIT
    intervention of a row; None: uniform."""
    lr: float = 2e-3
    """Peak learning rate (AdamW), linear warm-up then cosine decay to 10 %."""
    warmup: int = 100
    """Warm-up steps."""
    weight_decay: float = 0.05
    """AdamW weight decay."""
    seed: int = 0
    """Seeds weights, prompts and interventions."""
    text_dir: str | None = None
    """Folder of natural text; None: the Python documentation sources (Debian python3.11-doc)."""
    max_text_chars: int | None = 1_500_000
    """Read at most this many characters of natural text."""
    extra: dict = field(default_factory=dict)
    """Task-specific options passed to the high-level model."""
    finetune: dict | None = None
    """Overrides (field: value) of a second SIIT phase that starts from the first phase's weights with a
    fresh optimiser and learning-rate schedule, e.g. ``{"steps": 800, "lr": 3e-4, "w_single": 1.0}``;
    None: one phase. ``zoo train`` runs both."""

    def phases(self) -> list[PlantedConfig]:
        """The training phases: this recipe, then (with ``finetune``) the recipe with its overrides."""
        import dataclasses

        first = dataclasses.replace(self, finetune=None)
        if self.finetune is None:
            return [first]
        return [first, dataclasses.replace(first, **self.finetune, init_from=None)]

    @property
    def d_head(self) -> int:
        return self.d_model // self.n_heads

    @property
    def vocab_size(self) -> int:  # shown by `circuitkit zoo list`
        return 2048

    def __post_init__(self) -> None:
        if self.task not in ("ioi", "greater_than"):
            raise ValueError(f"PlantedConfig.task must be 'ioi' or 'greater_than', got {self.task!r}")
        if self.d_model % self.n_heads:
            raise ValueError(f"d_model={self.d_model} must be divisible by n_heads={self.n_heads}")
        if self.finetune is not None:
            import dataclasses

            known = {f.name for f in dataclasses.fields(self)} - {"name", "finetune"}
            bad = sorted(set(self.finetune) - known)
            if bad:
                raise ValueError(f"PlantedConfig.finetune: unknown fields {bad}; use fields of PlantedConfig")
