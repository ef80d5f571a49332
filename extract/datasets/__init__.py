"""Dataset adapters: one interface over Breakfast, COIN, Charades, user manifests and the synthetic world."""
