"""BYOL diagnosis on a EuroSAT subset (30/10/60 split, seed 0): online kNN (bank = 5,000 train images, val split) per epoch for variants of the engine's BYOL, with SimCLR as control.

Usage: python benchmarks/diagnostics/byol_variants.py VARIANT [EPOCHS]; VARIANT in byol, byol-noclip, byol-m99, byol-sep, byol-lr02-wu-m99, simclr.
"""
import sys, time, csv
sys.path.insert(0, str(__import__('pathlib').Path(__file__).resolve().parents[1]))
from geossl.data import load_data
from geossl.train.config import PretrainConfig
from geossl.train.run import pretrain
import geossl.train.optim as optim
from _common import SHARED_DATA

variant = sys.argv[1]; epochs = int(sys.argv[2]) if len(sys.argv) > 2 else 5
method = 'byol'; kw = {}; margs = {}
if variant.startswith('simclr'): method = 'simclr'
# every variant ran with LARC clipping (then the default) except "noclip"
clip = 'noclip' not in variant
orig = optim.LARS.__init__
def init(self, *a, **k): k['clip_lr'] = clip; orig(self, *a, **k)
optim.LARS.__init__ = init
if 'm99' in variant: margs['momentum'] = 0.99
if 'lr02' in variant: kw.update(lr=0.2)
if 'wu' in variant: kw.update(warmup_epochs=2)
if 'sep' in variant:
    import torch
    from geossl.methods.byol import BYOL
    from geossl.methods.base import StepOutput
    def step(self, views):
        h = [self.backbone(v) for v in views]
        z = [self.projector(x) for x in h]
        q = [self.predictor(x) for x in z]
        with torch.no_grad():
            t = [self.teacher_projector(self.teacher_backbone(v)) for v in views]
        loss = self.criterion(q[0], t[1]) + self.criterion(q[1], t[0])
        return StepOutput(loss=loss, features=h[0].detach(), embeddings=z[0].detach())
    BYOL.training_step = step
if 'sgd' in variant: kw.update(optimizer='sgd', lr=0.05, weight_decay=4e-4)
data = load_data(str(SHARED_DATA / 'EuroSAT_RGB'), split=(0.3, 0.1, 0.6), seed=0)
run = f'/tmp/byol-diag/{variant}-{epochs}'
cfg = PretrainConfig(method=method, method_args=margs, data=str(SHARED_DATA / 'EuroSAT_RGB'), epochs=epochs, batch_size=256,
                     run_dir=run, knn_bank_size=5000, online_eval_every=1, progress=False, **kw)
t = time.time(); pretrain(cfg, data=data)
rows = list(csv.DictReader(open(run + '/metrics.csv')))
knn = [round(float(r['val/knn_top1']), 1) for r in rows if r.get('val/knn_top1')]
rk = [round(float(r['monitor/rankme']), 1) for r in rows if r.get('monitor/rankme')]
print(variant, 'knn', knn, 'rankme', rk, f'{(time.time()-t)/60:.1f} min', flush=True)
