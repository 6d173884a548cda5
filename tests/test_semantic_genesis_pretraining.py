"""A tiny Semantic Genesis pretraining through the MONAI engine lowers both loss terms (restoration and
self-classification): pattern files -> PatternDataset -> elastic + one-of-four degradation on the batch ->
SemanticGenesisNet -> 1 * MSE + 0.01 * CE (the reference weights; CE weighted up here so it moves in a few steps)."""

from __future__ import annotations

import numpy as np
import torch

from genesis_monai.data import PatternDataset, find_pattern_files, write_pattern_files
from genesis_monai.engines import LossTermsHandler, PrepareDegradedBatch
from genesis_monai.losses import MultiTaskLoss
from genesis_monai.networks import SemanticGenesisNet
from genesis_monai.transforms import GenesisDegrade, RandElasticInPlane


def _patterns(folder, n_classes=3, per_class=12, shape=(16, 16, 8)):
    rng = np.random.default_rng(0)
    cubes, labels = [], []
    for c in range(n_classes):  # each class: a bright box at its own place, on noise
        base = rng.random((per_class, *shape)) * 0.3
        base[:, 4 * c:4 * c + 6, 2:10, 2:6] += 0.6
        cubes.append(base)
        labels += [c] * per_class
    write_pattern_files(str(folder), "train", 1, 1, np.concatenate(cubes), np.asarray(labels))


def test_tiny_pretraining_lowers_both_terms(tmp_path):
    from ignite.engine import Events
    from monai.engines import SupervisedTrainer

    torch.manual_seed(0)
    _patterns(tmp_path)
    ds = PatternDataset(find_pattern_files(str(tmp_path))["training"])
    loader = torch.utils.data.DataLoader(ds, batch_size=8, shuffle=True)
    net = SemanticGenesisNet(cls_classes=ds.n_classes, width=0.25)
    loss = MultiTaskLoss({
        "restoration": {"loss": torch.nn.MSELoss(), "weight": 1.0, "pred_key": 0, "target_key": "restoration"},
        "classification": {"loss": torch.nn.CrossEntropyLoss(), "weight": 0.1, "pred_key": 1, "target_key": "class"},
    })
    prepare = PrepareDegradedBatch(GenesisDegrade.from_preset("semantic_genesis", seed=0),
                                   augment=RandElasticInPlane(seed=0), extra_targets={"class": "label"})
    trainer = SupervisedTrainer(device=torch.device("cpu"), max_epochs=8, train_data_loader=loader, network=net,
                                optimizer=torch.optim.Adam(net.parameters(), 1e-3), loss_function=loss,
                                prepare_batch=prepare, decollate=False)
    LossTermsHandler(loss).attach(trainer)
    history = {"restoration": [], "classification": []}

    @trainer.on(Events.ITERATION_COMPLETED)
    def _record(engine):
        for term in history:
            history[term].append(float(engine.state.output[f"loss_{term}"]))

    trainer.run()
    for term, values in history.items():
        first, last = np.mean(values[:6]), np.mean(values[-6:])
        assert last < 0.8 * first, f"{term} loss did not fall: {first:.4f} -> {last:.4f}"
