"""Every config field of mtjax with its default. Other configs import this and override a few fields.

Run with `python -m mtjax.main --config configs/<name>.py --workdir DIR [--config.key=value ...]`.
"""

import ml_collections


def get_config() -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict()

  # ---- Data ----------------------------------------------------------------------------------
  config.dataset = ml_collections.ConfigDict()
  config.dataset.name = "nyuv2"  # nyuv2: MTAN/MTPSL .npy layout (docs/training.md).
  # nyuv2: the root holding {train,val}/{image,label,depth,normal}/{i}.npy. procedural_rooms: the
  # TFDS data_dir the generated dataset is built into ("" = TFDS's default).
  config.dataset.data_dir = ""
  config.dataset.builder_config = ""  # TFDS builder config (procedural_rooms: size, resolution).
  config.dataset.train_split = "train"
  config.dataset.eval_split = "val"
  config.dataset.num_classes = 13
  # full | onelabel | randomlabels | path to a float [N, K] .npy mask (K = the dataset's tasks).
  config.label_setting = "onelabel"
  config.tasks = ("semseg", "depth", "normal")
  # Per-task options (mtjax/tasks: each record's factory); a task not in config.tasks ignores its.
  # semseg's classes are config.dataset.num_classes.
  config.task_options = ml_collections.ConfigDict()
  config.task_options.depth = ml_collections.ConfigDict()
  config.task_options.depth.units = "metres"  # metres | disparity (what a zoom does to it)
  config.task_options.edge = ml_collections.ConfigDict()
  # Class-balanced BCE's positive weight: 0.95 (ATRC, InvPT), 0.8 (ATRC's NYUD config).
  config.task_options.edge.pos_weight = 0.95
  # odsF / oisF protocol (mtjax/edge_metrics.py PROTOCOLS: matching distance, thresholds, NMS).
  config.task_options.edge.protocol = "mtinet_nyud"
  # Processes matching each evaluation batch's edge maps: -1 one per CPU core, None serial.
  config.task_options.edge.eval_workers = ml_collections.FieldReference(-1, field_type=object)
  config.task_options.saliency = ml_collections.ConfigDict()
  config.task_options.saliency.pos_weight = ml_collections.FieldReference(None, field_type=object)
  config.task_options.saliency.protocol = "pooled"  # pooled (ATRC) | per_image (MTI-Net) | invpt
  config.task_options.normal = ml_collections.ConfigDict()
  # unit: the head's output L2-normalised (MTPSL) | raw: as RDC's released HRNet head.
  config.task_options.normal.head = "unit"
  # cosine: MTPSL's 1 - cos | mse: MT-CP's released loss (squared error of the raw output).
  config.task_options.normal.loss = "cosine"
  config.task_options.human_parts = ml_collections.ConfigDict()
  config.task_options.human_parts.num_parts = 7

  # Datasets of variable image size (nyudmt, pascal_context) fit every image to one canvas
  # (mtjax/data/geometry.py): resize (MTI-Net / MT-CP; evaluation resizes predictions back to
  # the original size) | pad (ATRC / InvPT: centre padding, no resizing).
  config.dataset.geometry = "resize"
  config.dataset.size = ()  # the canvas (H, W); (): the dataset's (NYUD-MT 480x640, PASCAL 512x512)
  config.dataset.normal_interpolation = "cubic"  # resize: normals cubic (MTI-Net) | nearest (MT-CP)
  config.dataset.archive = "mtinet"  # nyudmt: mtinet (MT-CP's, default) | atrc | astmt
  # pascal_context normals: the folder of MTI-Net's db_info/{nyu,context}_classes.json ("":
  # data_dir/db_info).
  config.dataset.db_info_dir = ""

  # ---- Augmentation (MTPSL's training loader: RandomScaleCrop, no flip) ---------------------
  config.augment = ml_collections.ConfigDict()
  # scale_crop (MTPSL RandomScaleCrop) | centre_zoom (MTI-Net / MT-CP) | scale_pad (ATRC / InvPT).
  config.augment.name = "scale_crop"
  config.augment.scales = (1.0, 1.2, 1.5)  # scale_crop, centre_zoom: zoom factors
  # Horizontal flip (normal x negated). MTPSL's NYUv2_crop loader does not flip; off by default.
  config.augment.flip = False
  config.augment.scale_range = (0.5, 2.0)  # scale_pad: uniform scale
  config.augment.photometric = False  # scale_pad: PhotoMetricDistortion of the image
  # A regularizer's second view: independent (another augmentation of the stored example) |
  # of_first (an augmentation of the first view: MTPSL's and RDC's released loaders).
  config.augment.second_view = "independent"

  # ---- Regions (region-aware regularizers; mtjax/data/regions.py, docs/regions.md) ---------
  # Train batches get `regions` int32 [B, H, W] (-1 = none) unless the source is "none".
  config.regions = ml_collections.ConfigDict()
  config.regions.source = "none"  # none | instance | patch | semantic_gt | files
  config.regions.dir = ""  # files: an exported region directory (manifest.json, {split}/{id}.png)
  config.regions.patch_size = 32  # patch: grid cell, pixels
  config.regions.split_components = False  # semantic_gt: one region per connected component
  config.regions.max_regions = 32  # R: the largest R regions are kept, as 0..R-1
  config.regions.min_pixels = 16  # smaller regions (counted at the loss resolution) are dropped
  config.regions.loss_stride = 1  # the loss sees every loss_stride-th pixel
  # area: the max_regions largest as 0..R-1 | none: the ids as read (RDC's released gray values).
  config.regions.relabel = "area"

  # ---- Task weighting (mtjax/weighting/: an Optax transform in the optimizer state) ------------
  # equal | fixed | uncertainty | dwa | log_smoothing | lps_no_log | lps (MT-CP's Table 4 rows).
  config.weighting = ml_collections.ConfigDict()
  config.weighting.name = "equal"
  config.weighting.fixed_weights = (1.0, 1.0, 1.0)  # fixed: w_t per task, in config.tasks order.
  config.weighting.spread = 2.5  # LPS β: the paper's text (released NYUD config: 7.5).
  config.weighting.history = 1  # LPS K, epochs between compared means (released: 1).
  config.weighting.min_weight = 0.05  # Ours: floor after the spread step (0: no clipping).
  config.weighting.normalize = True  # Ours: Σ_t w_t = T.
  config.weighting.as_released = False  # lps: the released code's rule exactly (docs/methods.md).
  # False: the weights are computed (and logged as train/weight/<task>) but the loss sums the terms
  # unweighted, as MT-CP's released loop does (its weighted total is overwritten).
  config.weighting.apply_weights = True
  config.weighting.dwa_temperature = 2.0  # DWA's τ (Liu et al. 2019).

  # ---- Regularizer (mtjax/regularizers; the objective is L_sup + weight * L_reg) -----------------
  config.regularizer = ml_collections.ConfigDict()
  config.regularizer.name = "none"  # none | rdc | xtc | pixel_contrast
  # rdc: paper (the text's loss) | as_released (RDC's released objective: logged, no gradient;
  # mtjax/regularizers/rdc_released.py).
  config.regularizer.mode = "paper"
  # rdc: 1 view | 2: the regularizer sees a second augmented view, both forwarded as one batch of
  # 2B (RDC's release and MTPSL; xtc always uses 2).
  config.regularizer.views = 1
  # rdc paper mode: 0 = constant λ | k > 0: λ · min(epoch / k, 1), stepped per epoch (0 in epoch
  # 0; the shape of the released per-epoch ramp, which reaches its maximum at epoch 20).
  config.regularizer.weight_ramp_epochs = 0
  config.regularizer.weight = 1.0  # λ (RDC Eq. 1: λ = 1).
  # RDC (Li et al., ECCV 2024; mtjax/regularizers/rdc.py). The paper gives no τ, a_θ shape or
  # covariance shrinkage; those defaults are ours (docs/methods.md).
  config.regularizer.contrast = "gaussian"  # gaussian | vector (region means) | pixel
  config.regularizer.distance = "w2"  # w2 | kl (gaussian contrast)
  config.regularizer.covariance = "full"  # full | diag (gaussian contrast)
  config.regularizer.extraction = "region"  # region (config.regions) | patch (a fixed grid)
  config.regularizer.vector_similarity = "cosine"  # cosine | l2 (vector contrast)
  # τ of sim = exp(-W / τ), in the distance's units. Ours: a_θ's maps are normalised per channel,
  # so squared W2 between regions of different content is O(D); τ = 8 puts the logit gaps of
  # D = 64 features at O(1-10) at the start of training.
  config.regularizer.temperature = 8.0
  config.regularizer.patch_size = 32  # extraction=patch: grid cell, input pixels
  config.regularizer.pixel_samples = 256  # contrast=pixel: sampled pixels per map
  config.regularizer.eps = 1e-4  # covariance shrinkage ε, squared feature units
  config.regularizer.sqrt_method = "auto"  # auto | newton_schulz | eigh (W2's cross term)
  config.regularizer.gumbel = True  # semseg prediction -> hard Gumbel one-hot (MTPSL); else argmax
  # a_θ: input layer, then stages of FiLM convs each followed by a 2x2 max-pool; output stride
  # 2 ** len(filters), D = filters[-1]. Ours: stride 4 keeps ~100 cells per region of a 64-region
  # 288x384 map (stride 32, MTPSL's, leaves 108 cells in all), D = 64 as the paper's benchmark size.
  config.regularizer.mapping = ml_collections.ConfigDict()
  config.regularizer.mapping.filters = (32, 64)
  config.regularizer.mapping.convs_per_stage = (1, 1)
  # a_θ's learning rates (scaled by the model's decay schedule): -1 = the model's for its convs;
  # the FiLM rows 1e-3 (MTPSL's FiLM optimizer).
  config.regularizer.learning_rate = -1.0
  config.regularizer.film_learning_rate = 1e-3
  # 0: the FiLM rows follow the model's schedule (scaled to film_learning_rate); k > 0: their own
  # StepLR(k, film_lr_step_factor) per epoch, as MTPSL (30, 0.5) and RDC's release (10, 0.5).
  config.regularizer.film_lr_step_epochs = 0
  config.regularizer.film_lr_step_factor = 0.5
  # xtc (MTPSL, mtjax/regularizers/xtc.py): ρ of the two terms against the bottleneck feature.
  # xtc configs set mapping.filters to the model's stages (MTPSL: (64, 128, 256, 512, 512) with
  # convs_per_stage (2, 2, 3, 3, 3)) and weight 2.0 (NYUv2).
  config.regularizer.feature_weight = 0.5
  # pixel_contrast (Yang et al., AAAI 2023, reconstructed; mtjax/regularizers/pixel_contrast.py).
  # No value is retrievable from the paper: all ours.
  config.regularizer.pixel_contrast = ml_collections.ConfigDict()
  config.regularizer.pixel_contrast.anchors = 256  # anchor pixels per example and target task
  config.regularizer.pixel_contrast.candidates = 256  # pixels positives / negatives come from
  config.regularizer.pixel_contrast.margin = 0.5  # triplet margin, unit-vector distances
  # Positive iff the source task's relation holds (mtjax/tasks: Task.relation); these override
  # the records' thresholds: depth |Δd| <= 0.2 m, normal angle <= 20°.
  config.regularizer.pixel_contrast.thresholds = ml_collections.ConfigDict(
      {"depth": 0.2, "normal": 20.0}
  )
  config.regularizer.pixel_contrast.projection_dim = 64
  config.regularizer.pixel_contrast.hidden_dim = 64

  # ---- Model ---------------------------------------------------------------------------------
  config.model = ml_collections.ConfigDict()
  config.model.name = "segnet_mtl"
  config.model.filters = (64, 128, 256, 512, 512)
  # auto | xla | im2col | mmgrad. auto: mmgrad on the CPU (XLA's convolution forward, the kernel
  # gradient as one matmul), XLA's own convolution (cuDNN) on accelerators.
  config.model.conv_impl = "auto"
  # segnet_mtl | hrnet_w18 | hrnet_w18_small_v2 | mtcp. HRNet: a pretrained backbone converted
  # with tools/convert_torch_weights.py, loaded at the start of a fresh run ("" = random init)
  # (MT-CP: a converted Mask2Former trunk or whole released model), and the input
  # normalisation: auto (ImageNet mean / std iff pretrained) | imagenet | none.
  config.model.pretrained = ""
  # float32 | bfloat16: convolutions and activations in bfloat16; params, optimizer state,
  # BatchNorm statistics, softmax, losses and metrics stay float32.
  config.compute_dtype = "float32"
  config.model.normalize_input = "auto"
  # HRNet: the backbone's BatchNorm momentum (PyTorch's convention: timm 0.1, RDC's release 0.01)
  # and its fuse layers' upsampling: nearest (timm, HRNet) | bilinear (RDC's release).
  config.model.bn_momentum = 0.1
  config.model.fuse_upsampling = "nearest"

  # ---- Optimisation (MTPSL: Adam 1e-4, 200 epochs at batch 2, halved entering epochs 99, 199) -
  config.batch_size = 2  # Global batch, split over all devices of all processes.
  config.learning_rate = 1e-4
  # Training length: num_train_steps when > 0, else num_epochs epochs of floor(N / batch_size)
  # steps each (N = training examples; MTPSL's DataLoader drops the last partial batch).
  config.num_epochs = 200.0
  config.num_train_steps = -1
  # Step decay: the lr is multiplied by lr_decay_factor on entering each of these epochs
  # (fractions allowed; boundary step = round(epoch * steps_per_epoch)). MTPSL steps
  # StepLR(step_size=100, gamma=0.5) at the START of every epoch, so its lr is 1e-4 for epochs
  # 0-98, 5e-5 for 99-198 and 2.5e-5 for epoch 199 (NYUv2: 397 steps per epoch, 79,400 steps).
  config.lr_decay_epochs = (99.0, 199.0)
  config.lr_decay_factor = 0.5
  # step (the above) | cosine_warm_restarts (RDC's released script: PyTorch's
  # CosineAnnealingWarmRestarts(T_0 = lr_restart_epochs, eta_min = lr_min) stepped per epoch).
  config.lr_schedule = "step"
  config.lr_restart_epochs = 10
  config.lr_min = 1e-6
  # "poly": lr · (1 − epoch / num_epochs)^lr_poly_power, set at the start of each epoch (MTI-Net's
  # and MT-CP's adjust_learning_rate).
  config.lr_poly_power = 0.9
  # "adam" (PyTorch's defaults, as MTPSL) or "adamw" (decoupled weight decay, PyTorch's AdamW, as
  # MT-CP), with weight_decay on every model parameter.
  config.optimizer = "adam"
  config.weight_decay = 0.0
  config.seed = 0
  # Train steps per jitted call (calls.resolve_steps_per_call): "auto" = 8 on the CPU, where the
  # steps of one call reuse XLA's temporaries instead of having the kernel zero them again
  # (docs/performance.md), and 1 on accelerators. Same updates; logging, evaluation and checkpoints still
  # happen at their exact steps.
  config.steps_per_call = ml_collections.FieldReference("auto", field_type=object)  # Or an int.

  # ---- Evaluation, logging, checkpoints ------------------------------------------------------
  config.eval_every_steps = 3_970  # 10 epochs of 397 steps (NYUv2 at batch 2).
  config.log_every_steps = 100
  # At each log step, also log train/grad_norm/<term>: the L2 norm of the gradient each loss term
  # (each task's weighted term, λ · the regularizer's) sends into the model's parameters, and of
  # their sum (one more compiled program; one forward and one VJP per term per log step).
  config.log_grad_norms = False
  config.checkpoint_every_steps = 3_970
  config.keep_checkpoints = 3  # The latest k are kept, plus the best by Δm.
  # Save checkpoints in a background thread (mtjax.checkpoint): training stalls only while the
  # state is copied to host memory. False: every save blocks until it is committed.
  config.async_checkpoints = True
  config.num_panel_images = 3  # Val examples shown in the TensorBoard image panel.
  # Single-task (STL) references for Δm: "auto" takes MTPSL's NYUv2 STL numbers of the label
  # setting (full | onelabel | randomlabels); name one of those explicitly for a path label setting;
  # "" disables Δm (and so keeping the best checkpoint).
  config.delta_m_reference = "auto"
  # Also report the metrics of RDC's released code, beside the correct ones: eval/normal_as_released/*
  # (normals scored on the raw output), eval/semseg_as_released/miou (absent classes count 0) and,
  # on NYUv2, eval/delta_m_as_released against its hard-coded STL numbers.
  config.metrics_as_released = False

  return config
