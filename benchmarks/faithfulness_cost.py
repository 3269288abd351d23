"""What does the faithfulness table cost, next to the maps it scores?

Setting: the shipped ResNet18 (width 16, trained on CIFAR-10), ``--images`` bundled test images of 32x32,
Grad-CAM of the predicted class at the five stages layer0..layer4, on the CPU.

    (a) layer_cams, 5 layers                              the maps: one forward + one backward
    (b) cam_faithfulness, 5 layers + 2 baselines, all 7   the whole table
    (c)   ... confidence change only (drop, increase)     1 forward per image per map
    (d)   ... ROAD only (MoRF, LeRF, combined)            18 imputations (scipy) + 18 forwards per image per map
    (e)   ... deletion + insertion only (32 steps)        66 forwards per image per map, batched
    (f) pytorch-grad-cam's own classes for what (c)+(d) compute, 7 maps   DropInConfidence, IncreaseInConfidence,
                                                          ROADCombined, ROADMostRelevantFirstAverage,
                                                          ROADLeastRelevantFirstAverage called one by one

Prints each as a ratio to (a), and (c)+(d) against (f): the same numbers (tests/test_faithfulness.py), with the
model's clean confidence computed once instead of once per metric and threshold, and LeRF/MoRF drawn once for
the three ROAD scores. ROAD's imputation (a sparse solve per image and threshold) dominates its cost.

Measured on this project's 2-core AMD EPYC CPU (torch 2.14.1, 2 threads, a training run sharing the machine),
16 images: (a) 0.03 s; (b) 13.1 s, 426x (a); (c) 0.07 s, 2x; (d) 9.0 s, 291x; (e) 5.9 s, 191x; (f) 21.9 s,
2.4x (c)+(d). A busy machine swings the ratios: rerun.

Run::

    python benchmarks/faithfulness_cost.py            # add --repeats 3 for steadier numbers
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

import cam_speed
import torch
from pytorch_grad_cam.metrics.cam_mult_image import DropInConfidence, IncreaseInConfidence
from pytorch_grad_cam.metrics.road import ROADCombined, ROADLeastRelevantFirstAverage, ROADMostRelevantFirstAverage
from pytorch_grad_cam.utils.model_targets import ClassifierOutputSoftmaxTarget

from eva_utils import data, sources, transforms
from eva_utils.cam import layer_cams, predict_targets, resnet_layers
from eva_utils.faithfulness import baseline_maps, cam_faithfulness


def time_it(fn: Callable[[], object], repeats: int) -> float:
    """Median wall time of ``fn()`` in seconds, after one warm-up call (cam_speed's timer: these calls take seconds)."""
    return cam_speed.time_it(fn, repeats, warmups=1)[0]


def main(args: argparse.Namespace) -> dict[str, float]:
    model = sources.load_model("pretrained:resnet18_w16_cifar10").model.eval()
    test_set = data.load_sample(train=False, transform=transforms.test_transforms())
    images = torch.stack([test_set[i][0] for i in range(args.images)])  # (N, 3, 32, 32)
    layers = resnet_layers(model)
    cams = layer_cams(model, images, layers)
    maps = {**cams, **baseline_maps(len(images), 32, 32)}
    targets = [ClassifierOutputSoftmaxTarget(int(c)) for c in predict_targets(model, images)]

    def pgc() -> None:
        for m in maps.values():
            for metric in (DropInConfidence(), IncreaseInConfidence(), ROADCombined(), ROADMostRelevantFirstAverage(),
                           ROADLeastRelevantFirstAverage()):
                metric(images, m, targets, model)

    times = {
        "a  layer_cams, 5 layers": time_it(lambda: layer_cams(model, images, layers), args.repeats),
        "b  cam_faithfulness, all metrics": time_it(lambda: cam_faithfulness(model, images, cams), args.repeats),
        "c    confidence change": time_it(lambda: cam_faithfulness(
            model, images, cams, metrics=["drop_in_confidence", "increase_in_confidence"]), args.repeats),
        "d    ROAD": time_it(lambda: cam_faithfulness(
            model, images, cams, metrics=["road_morf", "road_lerf", "road_combined"]), args.repeats),
        "e    deletion + insertion": time_it(lambda: cam_faithfulness(
            model, images, cams, metrics=["deletion_auc", "insertion_auc"]), args.repeats),
        "f  pytorch-grad-cam, (c)+(d)": time_it(pgc, max(1, args.repeats)),
    }
    a = times["a  layer_cams, 5 layers"]
    print(f"CPU: {cam_speed.cpu_model()}; torch {torch.__version__}; {torch.get_num_threads()} threads")
    print(f"shipped ResNet18 width 16, {len(images)} test images at 32x32, 5 layers + 2 baselines, median of {args.repeats}\n")
    print(f"{'what':36s} {'seconds':>8s} {'x (a)':>8s}")
    for name, seconds in times.items():
        print(f"{name:36s} {seconds:8.2f} {seconds / a:8.1f}")
    cd = times["c    confidence change"] + times["d    ROAD"]
    f = times["f  pytorch-grad-cam, (c)+(d)"]
    print(f"\n(f) / ((c)+(d)): {f / cd:.2f}  (pytorch-grad-cam's classes one by one vs the same scores here)")
    return {"b/a": times["b  cam_faithfulness, all metrics"] / a, "f/(c+d)": f / cd}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=16, help="test images scored")
    parser.add_argument("--repeats", type=int, default=1, help="timed runs per variant (median)")
    main(parser.parse_args())
