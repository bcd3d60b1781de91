"""Hardware-aware compression: channels and bits searched together against FINN's estimates at a fixed rate."""
