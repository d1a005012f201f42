"""The demo with a fourth task, ``edge``: the rooms' exact object and surface boundaries
(``procedural.edge_map``: instance changes and depth steps), class-balanced BCE (positive weight
0.95, ATRC / InvPT), odsF and oisF by the BSDS protocol (MTI-Net's NYUD protocol:
``mtjax.edge_metrics.PROTOCOLS["mtinet_nyud"]``).

    python -m mtjax.main --config configs/demo_edges.py --workdir runs/demo_edges

The first run generates ``procedural_rooms`` 1.1.0 (the version with edges) beside an older one.
"""

from configs import demo


def get_config():
  config = demo.get_config()
  config.tasks = ("semseg", "depth", "normal", "edge")
  # The demo's 4x normal weight (demo.py), and the edge term at the weight the multi-task edge
  # literature trains with (MTI-Net configs/nyud/hrnet18/mti_net+edges_normals.yml: edge 50.0 with
  # edge_w 0.95, normals 10): the balanced BCE's mean over mostly negative pixels is small.
  config.weighting.fixed_weights = (1.0, 1.0, 4.0, 50.0)
  config.task_options.edge.pos_weight = 0.95
  config.task_options.edge.protocol = "mtinet_nyud"
  return config
