"""Pure jnp operations that the regularizers (and anyone's own train step) call: ``gaussian``."""
