"""circuitkit's dictionary trainer: SAEs and transcoders on sae-lens (``python -m sae_training``).

Importing this package registers our architectures with sae-lens, so ``sae_lens.SAE.load_from_disk``
loads every dictionary we save. Other parts of circuitkit call ``load_dictionary`` /
``list_dictionaries`` for the shipped dictionaries of the built-in models.
"""

from sae_training import architectures as architectures  # registers with sae-lens
from sae_training.store import DictionaryInfo, list_dictionaries, load_dictionary, resolve_dictionary

__all__ = ["DictionaryInfo", "list_dictionaries", "load_dictionary", "resolve_dictionary"]
