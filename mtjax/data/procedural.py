"""Procedural indoor scenes: a vectorised NumPy ray caster producing NYUv2-like labelled frames.

A scene is a room (an inside-out axis-aligned box: floor, four walls, ceiling) holding random
furniture built from boxes (yawed about the vertical), vertical cylinders and spheres, labelled
with NYUv2's 13 classes (MTAN order, ``CLASSES``); pictures and windows are thin boxes on the
walls. Surfaces get procedural textures (sinusoidal noise, stripes, checker) and Lambertian
shading from one point light (with hard shadows) plus ambient. A pinhole camera with NYUv2's
intrinsics scaled to the output size sits at a random pose inside the room. Every pixel's ray is
intersected with every primitive at once (analytic slab, quadratic and cap tests); there is no
per-pixel Python loop.

Conventions (shared by every output):
  * World frame: metres, y up, floor at y = 0, room spans [0, X] x [0, Y] x [0, Z].
  * Camera frame (OpenCV): x right, y down, z forward. Pixel (row v, column u) looks along
    ``d = ((u - cx) / fx, (v - cy) / fy, 1)``.
  * ``depth`` is z-depth along the optical axis in metres, as NYUv2 (not ray length): the hit
    point is ``depth * d`` in camera coordinates and the ray length is ``depth * |d|``.
  * ``normal`` is the unit surface normal in the camera frame (x right, y down, z forward),
    oriented towards the camera (``dot(normal, d) < 0``); e.g. a floor seen by a level camera is
    about (0, -1, 0). All-zero marks invalid pixels.
  * Pixels whose depth exceeds ``MAX_DEPTH`` are invalid: depth 0, normal 0, semantic and
    instance -1, edge 255.
  * ``edge`` marks object, room-surface and occlusion boundaries (``edge_map``): a function of the
    instance map and the depth alone, so it is exact and can be recomputed from stored frames.
"""

from __future__ import annotations

import numpy as np

CLASSES = (
    "bed",
    "books",
    "ceiling",
    "chair",
    "floor",
    "furniture",
    "objects",
    "picture",
    "sofa",
    "table",
    "tv",
    "wall",
    "window",
)
BED, BOOKS, CEILING, CHAIR, FLOOR, FURNITURE, OBJECTS, PICTURE, SOFA, TABLE, TV, WALL, WINDOW = (
    range(13)
)
# NYUv2 Kinect colour intrinsics at 640x480 (fx, fy, cx, cy).
NYU_INTRINSICS = (518.8579, 519.4696, 325.5824, 253.7362)
MAX_DEPTH = 10.0
# ``edge_map``: a depth step between neighbours is an occlusion boundary when it exceeds this
# fraction of the nearer depth. A smooth surface seen at a grazing angle a also steps, by about
# 1 / (tan(a) f) of the depth per pixel (f: focal length in pixels): in the rooms of seeds 0-59 no
# single surface steps by more than 0.25 at 96x128; at 32x64 about 1 neighbour pair in 10^4 does.
EDGE_DEPTH_RATIO = 0.25
EDGE_IGNORE = 255  # ``edge`` value of invalid pixels; boundaries are 1, the rest 0.
_EPS = 1e-4
_FAR = np.float64(1e9)


def intrinsics(height: int, width: int) -> np.ndarray:
  """float64 [3, 3] pinhole matrix: NYUv2's 640x480 intrinsics scaled to ``height`` x ``width``."""
  fx, fy, cx, cy = NYU_INTRINSICS
  sx, sy = width / 640.0, height / 480.0
  return np.array([[fx * sx, 0, cx * sx], [0, fy * sy, cy * sy], [0, 0, 1]])


def camera_rays(height: int, width: int) -> np.ndarray:
  """float64 [H, W, 3] camera-frame ray directions with z = 1 (see the module conventions)."""
  k = intrinsics(height, width)
  v, u = np.meshgrid(np.arange(height), np.arange(width), indexing="ij")
  return np.stack([(u - k[0, 2]) / k[0, 0], (v - k[1, 2]) / k[1, 1], np.ones(u.shape)], -1)


def edge_map(instance: np.ndarray, depth: np.ndarray) -> np.ndarray:
  """Boundary map of a frame: edges lie on instance or depth boundaries and nowhere else.

  The exact rule. Two pixels are neighbours when they share a side (4-neighbourhood; nothing lies
  beyond the image border). A pixel is valid when its instance is >= 0 and its depth > 0 (the two
  agree in ``render_scene``). A valid pixel p is an edge (1) iff some valid neighbour q has

    * another instance id (an object or room-surface boundary), or
    * a depth step ``|z_p - z_q| > EDGE_DEPTH_RATIO * min(z_p, z_q)`` (an occlusion boundary,
      also inside one instance, e.g. one leg of a chair in front of another), evaluated in
      float64, where it is exact for float32 depths;

  otherwise it is 0. Invalid pixels are ``EDGE_IGNORE`` (255), and a valid pixel's invalid
  neighbours are disregarded (the surface beyond ``MAX_DEPTH`` need not end there). The rule is
  symmetric in p and q, so both pixels of a boundary pair are edges (boundaries are two pixels
  wide, none is favoured) and the map commutes with flips and transposes of its inputs, as the
  labels' horizontal flip in augmentation needs.

  Args:
    instance: int [H, W] instance ids, -1 invalid.
    depth: float [H, W, 1] z-depth in metres, 0 invalid.

  Returns:
    uint8 [H, W, 1]: 1 edge, 0 not, 255 invalid.

  Raises:
    ValueError: ``instance`` is not [H, W] or ``depth`` is not [H, W, 1] of the same H, W.
  """
  instance, z = np.asarray(instance), np.asarray(depth, np.float64)
  if instance.ndim != 2 or z.shape != (*instance.shape, 1):
    raise ValueError(
        f"edge_map takes instance [H, W] and depth [H, W, 1], got {instance.shape} and {z.shape}."
    )
  z = z[..., 0]
  valid = (instance >= 0) & (z > 0)
  edge = np.zeros(instance.shape, bool)
  for axis in (0, 1):  # Each pair of neighbours once: (p, its lower / right neighbour q).
    p = tuple(slice(None, -1) if a == axis else slice(None) for a in range(2))
    q = tuple(slice(1, None) if a == axis else slice(None) for a in range(2))
    step = np.abs(z[p] - z[q]) > EDGE_DEPTH_RATIO * np.minimum(z[p], z[q])
    boundary = valid[p] & valid[q] & ((instance[p] != instance[q]) | step)
    edge[p] |= boundary
    edge[q] |= boundary
  return np.where(valid, edge, EDGE_IGNORE).astype(np.uint8)[..., None]


def _rot_y(yaw):
  c, s = np.cos(yaw), np.sin(yaw)
  return np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])


def _distances(scene, o, d):
  """float [P, N] hit distances of rays o + t d (o [3] or [N, 3], d [N, 3]) with each object
  primitive (global order: boxes, spheres, cylinders); ``_FAR`` where a ray misses."""
  o = np.broadcast_to(o, d.shape)
  ts = [np.full((0, d.shape[0]), _FAR)]
  with np.errstate(divide="ignore", invalid="ignore"):
    if len(scene["box_c"]):  # Slab test in each box's frame: [P, N, 3].
      rot, h = scene["box_r"], scene["box_h"][:, None]  # rot: local -> world.
      ol = np.matmul(o[None] - scene["box_c"][:, None], rot)
      inv = 1.0 / np.matmul(d[None], rot)
      t1, t2 = (-h - ol) * inv, (h - ol) * inv
      near, far = np.minimum(t1, t2), np.maximum(t1, t2)
      tn = np.maximum(np.maximum(near[..., 0], near[..., 1]), near[..., 2])
      tf = np.minimum(np.minimum(far[..., 0], far[..., 1]), far[..., 2])
      ts.append(np.where((tn <= tf) & (tn > _EPS), tn, _FAR))
    if len(scene["sph_c"]):
      oc = o[None] - scene["sph_c"][:, None]  # [P, N, 3]
      a = (d * d).sum(-1)[None]
      b = (oc * d[None]).sum(-1)
      c = (oc * oc).sum(-1) - scene["sph_r"][:, None] ** 2
      t = (-b - np.sqrt(b * b - a * c)) / a
      ts.append(np.where(t > _EPS, t, _FAR))
    if len(scene["cyl_c"]):  # Vertical cylinders: side (quadratic in xz) and two caps.
      oc = o[None] - scene["cyl_c"][:, None]
      r, y0, y1 = (scene["cyl_r"][:, None], scene["cyl_y"][:, 0:1], scene["cyl_y"][:, 1:2])
      a = d[None, :, 0] ** 2 + d[None, :, 2] ** 2
      b = oc[..., 0] * d[None, :, 0] + oc[..., 2] * d[None, :, 2]
      c = oc[..., 0] ** 2 + oc[..., 2] ** 2 - r**2
      side = (-b - np.sqrt(b * b - a * c)) / a
      y = o[None, :, 1] + side * d[None, :, 1]
      t = np.where((side > _EPS) & (y >= y0) & (y <= y1), side, _FAR)
      for yc in (y0, y1):
        tc = (yc - o[None, :, 1]) / d[None, :, 1]
        px, pz = oc[..., 0] + tc * d[None, :, 0], oc[..., 2] + tc * d[None, :, 2]
        t = np.minimum(t, np.where((tc > _EPS) & (px**2 + pz**2 <= r**2), tc, _FAR))
      ts.append(t)
  return np.nan_to_num(np.concatenate(ts), nan=_FAR)


def _normals(scene, p, idx):
  """float [N, 3] outward world normals at hit points p [N, 3] of primitives idx [N] (>= 0)."""
  nb, ns = len(scene["box_c"]), len(scene["sph_c"])
  normal = np.zeros_like(p)
  box = idx < nb
  if box.any():  # Face whose slab the local point is deepest in, relative to the half-size.
    i = idx[box]
    pl = np.einsum("nji,nj->ni", scene["box_r"][i], p[box] - scene["box_c"][i])
    axis = (np.abs(pl) / scene["box_h"][i]).argmax(-1)
    nl = np.sign(pl[np.arange(len(i)), axis])[:, None] * np.eye(3)[axis]
    normal[box] = np.einsum("nij,nj->ni", scene["box_r"][i], nl)
  sph = (idx >= nb) & (idx < nb + ns)
  if sph.any():
    normal[sph] = p[sph] - scene["sph_c"][idx[sph] - nb]
  cyl = idx >= nb + ns
  if cyl.any():
    i = idx[cyl] - nb - ns
    q = p[cyl] - scene["cyl_c"][i]
    radial = np.abs(np.hypot(q[:, 0], q[:, 2]) - scene["cyl_r"][i])
    up, down = np.abs(q[:, 1] - scene["cyl_y"][i, 1]), np.abs(q[:, 1] - scene["cyl_y"][i, 0])
    cap = np.minimum(up, down) < radial
    normal[cyl] = np.where(
        cap[:, None], np.where(up < down, 1.0, -1.0)[:, None] * [0, 1, 0], q * [1, 0, 1]
    )
  return normal


def _texture(rng, base):
  """Texture parameters: type (0 noise, 1 stripes, 2 checker), colours a, b, scale, phases."""
  base = np.clip(np.asarray(base) * rng.uniform(0.7, 1.3, 3), 0.02, 1)
  other = np.clip(base * rng.uniform(0.5, 1.2) + rng.normal(0, 0.08, 3), 0.02, 1)
  return (rng.integers(3), base, other, rng.uniform(0.05, 0.5), rng.uniform(0, 2 * np.pi, 4))


def _make_scene(rng):
  """Random room, furniture, camera pose and light (see the module docstring)."""
  size = np.array([rng.uniform(3.0, 7.0), rng.uniform(2.4, 3.2), rng.uniform(3.0, 7.0)])
  prims = {"box": [], "sph": [], "cyl": []}  # (geometry..., semantic, instance, texture)
  inst = [6]  # Room surfaces are instances 0..5 (floor, ceiling, walls x0, x1, z0, z1).

  def add(kind, geom, sem, tex, new=True):
    if new:
      inst[0] += 1
    prims[kind].append((*geom, sem, inst[0] - 1, tex))

  cam = np.array([rng.uniform(0.6, size[0] - 0.6), rng.uniform(1.0, 1.8), 0])
  cam[2] = rng.uniform(0.6, size[2] - 0.6)
  taken = [(cam[0], cam[2], 0.5)]

  def place(radius):
    for _ in range(20):
      x, z = rng.uniform(radius, size[0] - radius), rng.uniform(radius, size[2] - radius)
      if all((x - a) ** 2 + (z - b) ** 2 > (radius + r) ** 2 for a, b, r in taken):
        taken.append((x, z, radius))
        return x, z
    return None

  def box(c, h, yaw, sem, tex, new=True):
    add("box", (np.array(c, float), np.array(h, float), _rot_y(yaw)), sem, tex, new)

  for _ in range(rng.integers(3, 11)):
    kind = rng.choice(["bed", "chair", "table", "sofa", "furniture", "objects", "tv"])
    yaw = rng.choice([0, np.pi / 2]) + rng.normal(0, 0.3) * (rng.uniform() < 0.5)
    r = {"bed": 1.1, "sofa": 1.0, "table": 0.7, "furniture": 0.6}.get(kind, 0.4)
    spot = place(r)
    if spot is None:
      continue
    x, z = spot
    rot = _rot_y(yaw)
    at = lambda dx, dy, dz: np.array([x, 0, z]) + rot @ np.array([dx, dy, dz])
    tex = _texture(rng, rng.uniform(0.2, 0.9, 3))
    if kind == "bed":
      w, l, hb = rng.uniform(0.45, 0.8), rng.uniform(0.9, 1.05), rng.uniform(0.2, 0.3)
      box(at(0, hb, 0), (w, hb, l), yaw, BED, tex)
      box(
          at(0, 2 * hb + 0.06, 0.1),
          (w - 0.02, 0.06, l - 0.12),
          yaw,
          BED,
          _texture(rng, (0.9, 0.9, 0.85)),
          False,
      )
      box(at(0, 0.5, -l), (w, 0.5, 0.04), yaw, BED, tex, False)
    elif kind in ("chair", "table"):
      w, l = (0.22, 0.22) if kind == "chair" else (rng.uniform(0.3, 0.6), rng.uniform(0.3, 0.5))
      top = rng.uniform(0.42, 0.48) if kind == "chair" else rng.uniform(0.7, 0.78)
      sem = CHAIR if kind == "chair" else TABLE
      box(at(0, top, 0), (w, 0.025, l), yaw, sem, tex)
      for sx, sz in ((-1, -1), (-1, 1), (1, -1), (1, 1)):
        box(
            at(sx * (w - 0.03), top / 2, sz * (l - 0.03)),
            (0.02, top / 2, 0.02),
            yaw,
            sem,
            tex,
            False,
        )
      if kind == "chair":
        box(at(0, top + 0.22, -l + 0.02), (w, 0.22, 0.02), yaw, sem, tex, False)
      else:  # Books and small objects on the table.
        for i in range(rng.integers(0, 4)):
          bh = rng.uniform(0.08, 0.14)
          box(
              at(-w * 0.6 + 0.06 * i, top + 0.025 + bh, 0),
              (0.025, bh, 0.1),
              yaw,
              BOOKS,
              _texture(rng, rng.uniform(0.1, 0.9, 3)),
          )
        if rng.uniform() < 0.5:
          add(
              "sph",
              (at(w * 0.5, top + 0.1, 0), 0.075),
              OBJECTS,
              _texture(rng, rng.uniform(0.2, 1, 3)),
          )
    elif kind == "sofa":
      w, l = rng.uniform(0.7, 1.0), 0.45
      box(at(0, 0.22, 0), (w, 0.22, l), yaw, SOFA, tex)
      box(at(0, 0.6, -l + 0.1), (w, 0.2, 0.1), yaw, SOFA, tex, False)
      for sx in (-1, 1):
        box(at(sx * (w - 0.08), 0.55, 0), (0.08, 0.12, l), yaw, SOFA, tex, False)
    elif kind == "furniture":
      h = rng.uniform(0.4, 1.0)
      box(at(0, h, 0), (rng.uniform(0.3, 0.55), h, rng.uniform(0.2, 0.35)), yaw, FURNITURE, tex)
    elif kind == "tv":
      box(at(0, 0.25, 0), (0.35, 0.25, 0.2), yaw, FURNITURE, tex)
      box(at(0, 0.8, 0), (0.33, 0.3, 0.03), yaw, TV, _texture(rng, (0.05, 0.05, 0.06)))
    else:  # objects: lamp-like cylinder plus sphere, or a lone ball.
      if rng.uniform() < 0.6:
        cy = rng.uniform(0.3, 1.2)
        add("cyl", (np.array([x, 0, z]), rng.uniform(0.05, 0.2), np.array([0, cy])), OBJECTS, tex)
        add("sph", (np.array([x, cy + 0.15, z]), 0.15), OBJECTS, tex, False)
      else:
        rad = rng.uniform(0.1, 0.3)
        add("sph", (np.array([x, rad, z]), rad), OBJECTS, tex)
  for _ in range(rng.integers(0, 4)):  # Pictures and windows: thin boxes on a wall.
    sem = rng.choice([PICTURE, WINDOW])
    hw, hh = rng.uniform(0.2, 0.7), rng.uniform(0.2, 0.5)
    wall, along = rng.integers(4), rng.uniform(0.8, 2.2)
    y = rng.uniform(1.2, 1.9) if sem == PICTURE else rng.uniform(1.0, 1.6)
    axis = 0 if wall < 2 else 2
    c = np.zeros(3)
    c[axis] = (0 if wall % 2 == 0 else size[axis]) + (0.02 if wall % 2 == 0 else -0.02)
    c[2 - axis] = min(along, size[2 - axis] - 0.8)
    c[1] = y
    h = np.array([hw, hh, hw])
    h[axis] = 0.02
    color = (0.8, 0.9, 1.0) if sem == WINDOW else rng.uniform(0.1, 1, 3)
    box(c, h, 0.0, sem, _texture(rng, color))
  to_centre = size / 2 - cam
  yaw = np.arctan2(to_centre[0], to_centre[2]) + rng.uniform(-0.7, 0.7)
  pitch, roll = rng.uniform(-0.45, 0.1), rng.normal(0, 0.05)
  f = np.array([np.sin(yaw) * np.cos(pitch), np.sin(pitch), np.cos(yaw) * np.cos(pitch)])
  right = np.cross(f, [0, 1, 0])
  right /= np.linalg.norm(right)
  down = np.cross(f, right)
  right, down = (
      np.cos(roll) * right + np.sin(roll) * down,
      np.cos(roll) * down - np.sin(roll) * right,
  )
  light = np.array(
      [rng.uniform(0.5, size[0] - 0.5), size[1] - 0.3, rng.uniform(0.5, size[2] - 0.5)]
  )
  room_tex = [_texture(rng, (0.5, 0.4, 0.3)), _texture(rng, (0.95, 0.95, 0.95))]
  room_tex += [_texture(rng, rng.uniform(0.5, 0.95, 3))] * 4
  scene = {"size": size, "cam_pos": cam, "cam_rot": np.stack([right, down, f], 1)}
  scene.update(light=light, ambient=rng.uniform(0.2, 0.4), room_tex=room_tex)
  for kind, geom_keys in (("box", ("c", "h", "r")), ("sph", ("c", "r")), ("cyl", ("c", "r", "y"))):
    items = prims[kind]
    for j, key in enumerate(geom_keys):
      scene[f"{kind}_{key}"] = np.array([p[j] for p in items], float).reshape(
          len(items), *np.shape(items[0][j]) if items else (0,)
      )
  ordered = prims["box"] + prims["sph"] + prims["cyl"]
  scene["sem"] = np.array([p[-3] for p in ordered], int)
  scene["inst"] = np.array([p[-2] for p in ordered], int)
  scene["tex"] = [p[-1] for p in ordered]
  return scene


def _albedo(textures, ids, p, normal):
  """float [N, 3] colours of world points p [N, 3] with texture index ids [N] into textures."""
  axis = np.abs(normal).argmax(-1)
  uv = np.stack([np.where(axis == 0, p[:, 2], p[:, 0]), np.where(axis == 1, p[:, 2], p[:, 1])], -1)
  kind = np.array([t[0] for t in textures])[ids]
  a, b = np.array([t[1] for t in textures])[ids], np.array([t[2] for t in textures])[ids]
  scale, ph = np.array([t[3] for t in textures])[ids], np.array([t[4] for t in textures])[ids]
  noise = (
      np.sin(uv[:, 0] * 7.1 + ph[:, 0]) * np.sin(uv[:, 1] * 5.3 + ph[:, 1])
      + 0.5 * np.sin((uv[:, 0] + uv[:, 1]) * 23.0 + ph[:, 2])
      + 0.3 * np.sin(p.sum(-1) * 61.0 + ph[:, 3])
  )
  mix = np.select(
      [kind == 0, kind == 1],
      [0.5 + 0.28 * noise, (np.sin(uv[:, 0] / scale + ph[:, 0]) > 0).astype(float)],
      (np.floor(uv[:, 0] / scale) + np.floor(uv[:, 1] / scale)) % 2,
  )
  return (a * (1 - mix[:, None]) + b * mix[:, None]) * (1 + 0.04 * noise[:, None])


def render_scene(seed: int, height: int, width: int) -> dict[str, np.ndarray]:
  """Renders the random scene of ``seed`` (deterministic: ``np.random.default_rng(seed)``).

  Args:
    seed: non-negative integer; equal seeds give bit-identical outputs on one platform.
    height, width: output size in pixels (intrinsics scaled from NYUv2's 640x480).

  Returns:
    dict (conventions in the module docstring) with ``image`` uint8 [H, W, 3] (sRGB);
    ``semantic`` int32 [H, W], 0..12 (``CLASSES``), -1 invalid; ``depth`` float32 [H, W, 1]
    z-depth metres, 0 invalid; ``normal`` float32 [H, W, 3] unit camera-frame, 0 invalid;
    ``instance`` int32 [H, W] (0 floor, 1 ceiling, 2..5 walls, >= 6 one per object), -1
    invalid; ``edge`` uint8 [H, W, 1] (``edge_map`` of instance and depth: 1 boundary, 0 not,
    255 invalid); ``intrinsics`` float64 [3, 3]; ``cam_to_world`` float64 [4, 4] (camera frame
    -> world frame, y up, floor y = 0); ``room_size`` float64 [3] (X, Y, Z extents, metres).

  Raises:
    ValueError: non-positive ``height`` or ``width``.
  """
  if height < 1 or width < 1:
    raise ValueError(f"height and width must be >= 1, got {height}x{width}.")
  scene = _make_scene(np.random.default_rng(seed))
  rot, o, size = scene["cam_rot"], scene["cam_pos"], scene["size"]
  dcam = camera_rays(height, width).reshape(-1, 3)
  d = dcam @ rot.T  # World directions, same length as dcam, so t is the z-depth.
  n = d.shape[0]
  with np.errstate(divide="ignore"):  # Room: exit distance of the inside-out box.
    tr = np.maximum(-o / d, (size - o) / d)
  axis = tr.argmin(-1)
  t_room = tr[np.arange(n), axis]
  positive = np.take_along_axis(d, axis[:, None], -1)[:, 0] > 0
  room_normal = -np.sign(np.take_along_axis(d, axis[:, None], -1)) * np.eye(3)[axis]
  room_id = np.select(
      [axis == 1, axis == 0],
      [np.where(positive, 1, 0), np.where(positive, 3, 2)],
      np.where(positive, 5, 4),
  )
  dist = _distances(scene, o, d)
  prim = dist.argmin(0) if len(dist) else np.zeros(n, int)
  t_obj = dist[prim, np.arange(n)] if len(dist) else np.full(n, _FAR)
  obj = t_obj < t_room
  t = np.where(obj, t_obj, t_room)
  p = o + t[:, None] * d
  normal = room_normal
  normal[obj] = _normals(scene, p[obj], prim[obj])
  normal /= np.linalg.norm(normal, axis=-1, keepdims=True)
  normal *= -np.sign((normal * d).sum(-1, keepdims=True) + 1e-12)  # Face the camera.
  gid = np.where(obj, prim + 6, room_id)  # Room surfaces 0..5, then the primitives.
  semantic = np.concatenate([[FLOOR, CEILING, WALL, WALL, WALL, WALL], scene["sem"]])[gid]
  instance = np.concatenate([np.arange(6), scene["inst"]])[gid]
  # Shading: Lambert from the point light with hard shadows from the objects, plus ambient.
  to_light = scene["light"] - p
  dist = np.linalg.norm(to_light, axis=-1)
  ldir = to_light / dist[:, None]
  t_shadow = _distances(scene, p + 1e-3 * normal, ldir).min(0, initial=_FAR)
  lit = (t_shadow >= dist) * np.clip((normal * ldir).sum(-1), 0, None) * 6.0 / (1.0 + dist**2)
  textures = scene["room_tex"] + scene["tex"]
  albedo = _albedo(textures, gid, p, normal)
  color = albedo * (scene["ambient"] + lit)[:, None]
  image = (np.clip(color, 0, 1) ** (1 / 2.2) * 255 + 0.5).astype(np.uint8)
  valid = t <= MAX_DEPTH
  cam_to_world = np.eye(4)
  cam_to_world[:3, :3], cam_to_world[:3, 3] = rot, o
  depth = np.where(valid, t, 0).astype(np.float32).reshape(height, width, 1)
  instance = np.where(valid, instance, -1).astype(np.int32).reshape(height, width)
  return {
      "image": image.reshape(height, width, 3),
      "semantic": np.where(valid, semantic, -1).astype(np.int32).reshape(height, width),
      "depth": depth,
      "normal": np.where(valid[:, None], normal @ rot, 0)
      .astype(np.float32)
      .reshape(height, width, 3),
      "instance": instance,
      "edge": edge_map(instance, depth),
      "intrinsics": intrinsics(height, width),
      "cam_to_world": cam_to_world,
      "room_size": size.copy(),
  }
