"""TFDS dataset builders shipped with mtjax (importing a module registers its builder)."""
