"""Where a map is computed and judged: ``layers`` (which layers; ``is_resnet``), ``targets`` (what to explain: the
one parser), ``hooks``, ``cam`` (``layer_cams`` and its method registry), ``faithfulness``, MSD-Net's exits
(``exits``, ``budgets``, ``exit_text``, ``multiexit``) and ``tracking`` (maps during training)."""
