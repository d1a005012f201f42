"""A released MT-CP checkpoint's keys -> the whole MTCP: tools/torch_mtcp.py (the released
structure and names in PyTorch, transformers' Mask2Former trunk) with random weights against
mtjax.models.mtcp with the imported variables, end to end (no download; skipped without the mtcp
extra)."""

import copy
import re
import sys
from pathlib import Path

import jax
import numpy as np
import pytest

from mtjax.models import mtcp, mtcp_import, segnet, swin
from mtjax.models import state_dict as state_dict_lib

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))
import torch_mtcp  # noqa: E402  pylint: disable=g-import-not-at-top  # tools/

import test_mask2former  # noqa: E402  pylint: disable=g-import-not-at-top  # its tiny trunk

WIDTH = 32  # the released 256, tiny: the trunk's mask feature size.
UPSAMPLE = {"nyud": (2, 2, 1), "pascal": (4, 4, 1)}
TASKS = {"nyud": ("semseg", "depth", "normal"), "pascal": ("semseg", "human_parts", "saliency")}


def _trunk_config():
  s = test_mask2former.SETTINGS
  backbone = transformers.SwinConfig(
      embed_dim=s.backbone.embed_dim, depths=list(s.backbone.depths),
      num_heads=list(s.backbone.num_heads), window_size=s.backbone.window_size, image_size=64,
      out_features=["stage1", "stage2", "stage3", "stage4"], drop_path_rate=0.0,
  )  # fmt: skip
  return transformers.Mask2FormerConfig(
      backbone_config=backbone, feature_size=s.pixel_decoder.feature_size,
      mask_feature_size=s.pixel_decoder.mask_feature_size,
      encoder_layers=s.pixel_decoder.encoder_layers,
      encoder_feedforward_dim=s.pixel_decoder.encoder_feedforward_dim,
      hidden_dim=s.decoder.hidden_dim, num_queries=s.decoder.num_queries,
      num_attention_heads=s.decoder.num_attention_heads, decoder_layers=s.decoder.decoder_layers,
      dim_feedforward=s.decoder.dim_feedforward, num_labels=s.num_labels,
  )  # fmt: skip


def _models(naming, num_classes=5):
  regression = ("depth",) if naming == "nyud" else ()
  reference = torch_mtcp.MTCP(
      _trunk_config(), (num_classes, 1, 3) if naming == "nyud" else (num_classes, 7, 1),
      dataset=naming, upsample=UPSAMPLE[naming],
      regression=tuple(t in regression for t in TASKS[naming]), width=WIDTH,
  )  # fmt: skip
  torch.manual_seed(0)
  with torch.no_grad():
    for name, p in reference.named_parameters():
      scale = 0.2 if name.startswith("backbon.") else 0.05
      p.copy_(
          torch.randn_like(p) * scale
          + (1.0 if re.search(r"norm|\.b[12]\.|bn", name) and name.endswith("weight") else 0.0)
      )
    for name, b in reference.named_buffers():
      if name.endswith("running_mean"):
        b.copy_(torch.randn_like(b) * 0.1)
      elif name.endswith("running_var"):
        b.copy_(torch.rand_like(b) + 0.5)
  settings = mtcp.MTCPSettings(
      trunk=test_mask2former.SETTINGS,
      width=WIDTH,
      decoder=swin.SwinSettings(embed_dim=WIDTH, depths=(1, 2, 1), num_heads=(2, 2, 2)),
      head_upsample=tuple(zip(TASKS[naming], UPSAMPLE[naming])),
      regression_heads=regression,
  )
  ours = mtcp.MTCP(num_classes, TASKS[naming], settings, normalize_input=False)
  return reference, ours


def _nhwc(task, y):
  """A PyTorch output [B, C, H, W] before the activation -> float64 NHWC after the task record's
  activation (``mtjax.tasks``); normals are left raw (``_compare``)."""
  y = y.detach().double().numpy().transpose(0, 2, 3, 1)
  if task == "normal":
    return y
  record = segnet.head_tasks("test", (task,), 5)[0]
  return np.asarray(record.activation(jax.numpy.asarray(y)), np.float64)  # (float32)


def _compare(task, ours, exact, float32):
  """Ours (float32, after the task's activation) against the reference in float64 (``exact``),
  within 1e-4 of its scale or twice the reference's own float32 error, whichever is larger: deep
  random networks in float32 differ from their float64 selves by more than 1e-4 in places. Unit
  normals are compared as ours · |exact| against exact (normalising divides an error by the
  vector's length, so short raw vectors would dominate a comparison of directions)."""
  ours = np.asarray(ours, np.float64)
  if task == "normal":
    ours = ours * np.linalg.norm(exact, axis=-1, keepdims=True)
    float32 = float32 / np.linalg.norm(float32, axis=-1, keepdims=True)
    float32 = float32 * np.linalg.norm(exact, axis=-1, keepdims=True)
  assert ours.shape == exact.shape, (ours.shape, exact.shape)
  atol = max(1e-4 * np.abs(exact).max(), 2 * np.abs(float32 - exact).max())
  assert atol < 1e-2 * np.abs(exact).max()  # The reference's float32 run is itself close.
  np.testing.assert_allclose(ours, exact, atol=atol, rtol=0)


def _reference_outputs(reference, images, train):
  """{(k, task): (float64 output, float32 output)}: k = "final", 0, 1 (deep supervision)."""
  out = {}
  for dtype in (torch.float32, torch.float64):
    model = copy.deepcopy(reference).to(dtype)
    model.train(train)
    with torch.no_grad():
      final, deep = model(torch.from_numpy(images.transpose(0, 3, 1, 2)).to(dtype))
    for k, outputs in (("final", final), (0, deep[0]), (1, deep[1])):
      for task, y in zip(model.task_names, outputs):
        out.setdefault((k, task), []).append(_nhwc(task, y))
  return out


@pytest.mark.parametrize("naming", ["nyud", "pascal"])
def test_released_checkpoint_gives_the_released_forward(naming):
  reference, ours = _models(naming)
  state = {k: v.numpy() for k, v in reference.state_dict().items()}
  variables = mtcp_import.convert_state_dict(state, ours, naming)
  images = np.random.default_rng(1).normal(size=(2, 64, 88, 3)).astype(np.float32)
  reference.task_names = TASKS[naming]

  # Evaluation: the running statistics were read.
  got = jax.jit(lambda v, i: ours.apply(v, i))(variables, images)
  for (k, task), (float32, exact) in _reference_outputs(reference, images, False).items():
    if k == "final":
      _compare(task, got[task], exact, float32)

  # Training: batch statistics, and the deep-supervision heads.
  got, _ = jax.jit(lambda v, i: ours.apply(v, i, train=True, mutable=["batch_stats"]))(
      variables, images
  )
  for (k, task), (float32, exact) in _reference_outputs(reference, images, True).items():
    _compare(task, got[task] if k == "final" else got["deep_supervision"][k][task], exact, float32)


def test_parameter_counts_equal_the_released_model_less_what_it_never_uses():
  reference, ours = _models("nyud")
  variables = mtcp_import.convert_state_dict(
      {k: v.numpy() for k, v in reference.state_dict().items()}, ours, "nyud"
  )
  never_used = re.compile(
      r"transformer\d\.patch_embed\.|fpn_\w+\.fpn_convs\.[12]\.|gaaf\d?\.conv[23]\."
      r"|log_var_list|skip_gate|lambda_param|alpha_param|backbon\.model\.pixel_level_module\.encoder\.swin\.layernorm\."
  )
  # named_parameters() lists the shared spf_modules[3] once, as spf_modules.2.
  total = sum(p.numel() for p in reference.parameters())
  unused = sum(p.numel() for n, p in reference.named_parameters() if never_used.match(n))
  assert unused > 0
  assert sum(x.size for x in jax.tree.leaves(variables["params"])) == total - unused


def test_missing_and_unknown_keys_are_named():
  reference, ours = _models("nyud")
  state = {k: v.numpy() for k, v in reference.state_dict().items()}
  with pytest.raises(ValueError, match=r"naming='cityscapes'"):
    mtcp_import.convert_state_dict(state, ours, "cityscapes")
  broken = dict(state)
  del broken["gaaf2.gate1.weight"]
  broken["gaaf2.extra.weight"] = np.zeros(3, np.float32)
  with pytest.raises(
      ValueError,
      match=r"1 keys of no parameter \['gaaf2.extra.weight'\], 1 parameters missing \['cfm_depth/gate1/kernel'\]",
  ):
    mtcp_import.convert_state_dict(broken, ours, "nyud")


def test_split_qkv_and_batchnorm_leaves():
  w = np.arange(12, dtype=np.float32).reshape(6, 2)
  out = mtcp_import.split_qkv({"layers.0.blocks.0.attn.qkv.weight": w, "other": w})
  np.testing.assert_array_equal(out["layers.0.blocks.0.attn.k.weight"], w[2:4])
  assert set(out) == {f"layers.0.blocks.0.attn.{n}.weight" for n in "qkv"} | {"other"}
  assert state_dict_lib.batchnorm_leaf("b1.running_var", ("m", "b1")) == ("m", "b1", "var")
  assert state_dict_lib.batchnorm_leaf("b1.num_batches_tracked", ("m", "b1")) is None
  assert state_dict_lib.batchnorm_leaf("b1.bogus", ("m", "b1")) == ()


_TINY_CONFIG = """
from configs import nyudmt_mtcp


def get_config():
  config = nyudmt_mtcp.get_config()
  config.dataset.num_classes = 5
  config.model.mtcp.update(dict(
      swin_embed_dim=16, swin_depths=(2, 2, 2, 2), swin_num_heads=(2, 2, 4, 4),
      swin_window_size=4, feature_size=32, mask_feature_size=32, encoder_layers=2,
      encoder_feedforward_dim=64, num_attention_heads=4, hidden_dim=32, num_queries=5,
      decoder_layers=4, dim_feedforward=64, num_labels=7, width=32,
  ))
  return config
"""


def test_converted_checkpoints_initialise_a_run_through_the_config(tmp_path):
  import convert_torch_weights  # pylint: disable=g-import-not-at-top  # tools/

  from mtjax.models import registry  # pylint: disable=g-import-not-at-top

  reference, _ = _models("nyud")
  (tmp_path / "tiny.py").write_text(_TINY_CONFIG)
  # The released training's file: {"optimizer": ..., "model": state dict, "epoch": ...}.
  torch.save({"model": reference.state_dict(), "epoch": 3}, tmp_path / "checkpoint.pth.tar")
  torch.save(reference.backbon.state_dict(), tmp_path / "mask2former.bin")
  convert = lambda src, dst, variant: convert_torch_weights.main(
      [
          str(tmp_path / src),
          str(tmp_path / dst),
          "--variant",
          variant,
          "--config",
          str(tmp_path / "tiny.py"),
      ]
  )
  assert convert("checkpoint.pth.tar", "whole.msgpack", "mtcp_nyud") == 0
  assert convert("mask2former.bin", "trunk.msgpack", "mask2former") == 0
  assert convert("mask2former.bin", "trunk.msgpack", "mask2former") == 2  # Never overwritten.

  config = convert_torch_weights._load_config(str(tmp_path / "tiny.py"))  # pylint: disable=protected-access
  model = registry.create_model(config)
  init = model.init(jax.random.key(0), np.zeros((1, 64, 64, 3), np.float32))
  expected = mtcp_import.convert_state_dict(
      {k: v.numpy() for k, v in reference.state_dict().items()}, model, "nyud"
  )
  same = lambda a, b: jax.tree.all(jax.tree.map(np.array_equal, a, b))

  config.model.pretrained = str(tmp_path / "whole.msgpack")
  params, stats = registry.with_pretrained(config, init["params"], init["batch_stats"])
  assert same(params, expected["params"]) and same(stats, expected["batch_stats"])

  config.model.pretrained = str(tmp_path / "trunk.msgpack")
  params, stats = registry.with_pretrained(config, init["params"], init["batch_stats"])
  assert same(params["trunk"], expected["params"]["trunk"])
  assert same({**params, "trunk": None}, {**init["params"], "trunk": None})
  assert same(stats, init["batch_stats"])

  config.model.mtcp.width = config.model.mtcp.mask_feature_size = 16  # Fits neither.
  small = registry.create_model(config).init(
      jax.random.key(0), np.zeros((1, 64, 64, 3), np.float32)
  )
  config.model.pretrained = str(tmp_path / "whole.msgpack")
  with pytest.raises(ValueError, match=r"holds neither this MT-CP's variables \(\d+ differ"):
    registry.with_pretrained(config, small["params"], small["batch_stats"])


def test_the_pytorch_reference_chunks_its_affinity_without_changing_it():
  torch.manual_seed(0)
  whole = torch_mtcp.GAAF_module2(32).double()
  chunked = copy.deepcopy(whole)
  chunked.chunk = 5
  x, others = torch.randn(2, 32, 4, 6, dtype=torch.float64), torch.randn(
      2, 64, 4, 6, dtype=torch.float64
  )
  outs = []
  for module in (whole, chunked):
    xi = x.clone().requires_grad_()
    out = module(xi, others)
    out.sin().sum().backward()
    outs.append((out.detach(), xi.grad))
  torch.testing.assert_close(outs[0], outs[1])
