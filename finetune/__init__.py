"""Stage three (optional): the whole CAV-Net trained from raw video — the model with its backbones, its data
(decoded clips, augmentation), the step loop and the distributed set-up. Pure pieces; the wiring of
``cavnet finetune`` is ``cavnet.pipelines.finetune``."""
