"""Where a map is computed and judged: layers, Grad-CAM (`layer_cams`), faithfulness, MSD-Net's exits, maps during training."""
