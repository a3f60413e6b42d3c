"""Word lists shared by the task generators and the toy-model corpus.

Every list is split into a *train* part (used in the task sentences the toy models are trained on) and a
*held-out* part (never seen in a task sentence during training). Held-out names still occur in the
corpus' filler sentences so that their embeddings are learned; what is held out is the IOI structure
around them. Evaluations on the built-in models use the held-out parts, so a score measures the learned
algorithm, not memorised sentences.
"""

from __future__ import annotations

NAMES_TRAIN: tuple[str, ...] = (
    "Mary", "John", "Alice", "Bob", "Anna", "James", "Sarah", "David", "Laura", "Michael",
    "Emma", "Daniel", "Kate", "Paul", "Lisa", "Mark", "Julia", "Peter", "Rose", "Tom",
    "Grace", "Sam", "Helen", "Jack", "Lucy", "Adam", "Clara", "Ben", "Nina", "Henry",
    "Amy", "Ryan", "Sophie", "Eric", "Ella", "Oscar", "Jane", "Max", "Eva", "Leo",
    "Ruth", "Carl", "Iris", "Hugo", "Diana", "Felix", "Olga", "Ivan", "Chris", "Anne",
    "Joe", "Mike", "Sara", "Jim", "Tim", "Dan", "Bill", "Jean", "Andrew", "Rachel",
    "Jacob", "Matt", "Dave", "Kelly", "Karen", "Brian", "Scott", "Jason", "Patrick", "Martin",
    "Nick", "Richard", "Robert", "Thomas", "Charles", "Martha", "Edward", "Philip",
)  # fmt: skip
NAMES_HELDOUT: tuple[str, ...] = (
    "Victor", "Alex", "Susan", "Frank", "Linda", "George", "Nora", "Kevin", "Maria", "Steve",
    "Vera", "Luke", "Emily", "Roger", "Tina", "Simon",
)  # fmt: skip

PLACES_TRAIN: tuple[str, ...] = (
    "store", "park", "school", "station", "garden", "office", "beach", "market", "library",
    "restaurant", "hospital", "house", "church", "museum",
)  # fmt: skip
PLACES_HELDOUT: tuple[str, ...] = ("hotel", "cafe", "river", "bank", "theater")

OBJECTS_TRAIN: tuple[str, ...] = (
    "drink", "book", "ring", "bag", "letter", "kiss", "basketball", "computer", "necklace",
    "snack", "bone", "apple", "key", "flower", "ticket", "hat",
)  # fmt: skip
OBJECTS_HELDOUT: tuple[str, ...] = ("gift", "pen", "card", "watch", "coin")

# IOI templates after Wang et al. (2022), "Interpretability in the Wild". [A] is the indirect object,
# [B] the subject (written here in the BABA order; ABBA swaps the first two names). Prompts end right
# before the answer name.
IOI_TEMPLATES_TRAIN: tuple[str, ...] = (
    "Then, [B] and [A] went to the [PLACE]. [B] gave a [OBJECT] to",
    "When [B] and [A] got a [OBJECT] at the [PLACE], [B] decided to give it to",
    "When [B] and [A] went to the [PLACE], [B] gave the [OBJECT] to",
    "After [B] and [A] went to the [PLACE], [B] gave a [OBJECT] to",
    "While [B] and [A] were working at the [PLACE], [B] gave a [OBJECT] to",
    "Then, [B] and [A] had a long argument, and afterwards [B] said to",
    "The [PLACE] [B] and [A] went to had a [OBJECT]. [B] gave it to",
    "Friends [B] and [A] found a [OBJECT] at the [PLACE]. [B] gave it to",
    "Then, [B] and [A] were thinking about going to the [PLACE]. [B] wanted to give a [OBJECT] to",
    "When [B] and [A] arrived at the [PLACE], [B] passed the [OBJECT] to",
    "Afterwards [B] and [A] went to the [PLACE]. [B] brought a [OBJECT] to",
    "Once [B] and [A] left the [PLACE], [B] handed the [OBJECT] to",
)  # fmt: skip
IOI_TEMPLATES_HELDOUT: tuple[str, ...] = (
    "Then, [B] and [A] had a lot of fun at the [PLACE]. [B] gave a [OBJECT] to",
    "When [B] and [A] met at the [PLACE], [B] showed the [OBJECT] to",
    "Later [B] and [A] walked to the [PLACE], and [B] sent a [OBJECT] to",
)  # fmt: skip

# Greater-than nouns after Hanna et al. (2023), "How does GPT-2 compute greater-than?".
GT_NOUNS_TRAIN: tuple[str, ...] = (
    "war", "expedition", "project", "siege", "reign", "journey", "trial", "drought", "voyage",
    "campaign", "festival", "strike", "occupation", "crisis", "famine", "contract",
)  # fmt: skip
GT_NOUNS_HELDOUT: tuple[str, ...] = ("dynasty", "pilgrimage", "plague", "rebellion", "survey")
GT_TEMPLATE = "The [NOUN] lasted from the year [C][YY] to the year [C]"
GT_CENTURIES: tuple[str, ...] = ("11", "12", "13", "14", "15", "16", "17", "18", "19")


def all_names() -> tuple[str, ...]:
    return NAMES_TRAIN + NAMES_HELDOUT


def task_words() -> list[str]:
    """Words (with GPT-2-style leading space) that every built-in tokenizer must keep as single tokens."""
    words = [" " + w for w in all_names()]
    words += [" " + w for w in PLACES_TRAIN + PLACES_HELDOUT + OBJECTS_TRAIN + OBJECTS_HELDOUT]
    words += [" " + w for w in GT_NOUNS_TRAIN + GT_NOUNS_HELDOUT]
    words += [" " + c for c in GT_CENTURIES] + [f"{i:02d}" for i in range(100)]
    return words
