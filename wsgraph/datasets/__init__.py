"""Weight-space datasets: image sources, batched INR fitting, sine INRs, checkpoint folders."""
