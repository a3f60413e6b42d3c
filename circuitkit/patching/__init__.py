"""Circuit-discovery methods: activation, attribution (AtP, AtP*), relevance (RelP) patching, IG."""
