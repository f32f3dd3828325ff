"""PPNet-style ranking with LHUC gates (recsys port)."""
