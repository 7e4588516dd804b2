"""lightly's BYOL example loop (its heads, loss, update_momentum, cosine_schedule, SGD 0.06) on our EuroSAT subset/views."""
import copy, time, torch, sys
from torch import nn
from lightly.loss import NegativeCosineSimilarity
from lightly.models.modules import BYOLProjectionHead, BYOLPredictionHead
from lightly.models.utils import deactivate_requires_grad, update_momentum
from lightly.utils.scheduler import cosine_schedule
from geossl.data import load_data
from geossl.nn import build_backbone
from geossl.augment.views import MultiViewAugment, Normalization, ViewAugment
from geossl.methods.byol import BYOL
from geossl.eval.features import extract_features
from geossl.eval.knn import knn_classify
from geossl.eval.monitors import rankme
torch.manual_seed(0)
data = load_data(str(__import__('pathlib').Path(__file__).resolve().parents[3] / 'shared' / 'data' / 'EuroSAT_RGB'), split=(0.3, 0.1, 0.6), seed=0)
norm = Normalization(data.mean, data.std, data.value_scale)
aug = MultiViewAugment([ViewAugment(v, norm, True) for v in BYOL.default_views(64, True)])
class M(nn.Module):
    def __init__(s):
        super().__init__(); s.backbone = build_backbone('resnet18', 3)
        s.projection_head = BYOLProjectionHead(512, 1024, 256); s.prediction_head = BYOLPredictionHead(256, 1024, 256)
        s.backbone_momentum = copy.deepcopy(s.backbone); s.projection_head_momentum = copy.deepcopy(s.projection_head)
        deactivate_requires_grad(s.backbone_momentum); deactivate_requires_grad(s.projection_head_momentum)
    def forward(s, x): return s.prediction_head(s.projection_head(s.backbone(x)))
    def forward_momentum(s, x): return s.projection_head_momentum(s.backbone_momentum(x)).detach()
m = M(); crit = NegativeCosineSimilarity()
opt = torch.optim.SGD(m.parameters(), lr=0.06)
loader = torch.utils.data.DataLoader(data.train, batch_size=256, shuffle=True, drop_last=True, num_workers=2)
epochs = int(sys.argv[1]) if len(sys.argv) > 1 else 4
bank = torch.utils.data.Subset(data.train, range(5000))
for ep in range(epochs):
    mom = cosine_schedule(ep, epochs, 0.996, 1)
    t = time.time(); zs = None
    for x, _ in loader:
        v0, v1 = aug(x)
        update_momentum(m.backbone, m.backbone_momentum, m=mom); update_momentum(m.projection_head, m.projection_head_momentum, m=mom)
        p0 = m(v0); z0 = m.forward_momentum(v0); p1 = m(v1); z1 = m.forward_momentum(v1)
        loss = 0.5 * (crit(p0, z1) + crit(p1, z0))
        opt.zero_grad(); loss.backward(); opt.step()
        zs = m.projection_head(m.backbone(v0)).detach() if zs is None else zs
    with torch.no_grad():
        zlast = m.projection_head(m.backbone(v0))
    bf, by = extract_features(m.backbone, bank, preprocess=norm, batch_size=256, progress=False)
    tf, ty = extract_features(m.backbone, data.val, preprocess=norm, batch_size=256, progress=False)
    m.train()
    print(f'lightly-loop ep{ep} loss {loss.item():.3f} knn {knn_classify(bf, by, tf, ty, k=20, temperature=0.07)["top1"]:.1f} rankme(z) {rankme(zlast):.1f} {time.time()-t:.0f}s', flush=True)
