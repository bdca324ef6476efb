"""Facts about this computer: hardware, memory estimates, GPU offload planning."""
