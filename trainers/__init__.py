"""Training stages (SFT, offline DPO, online DPO) and the evaluation callback. Installed as ``lioneval.trainers``.

Needs the ``train`` extra: ``pip install 'lioneval[train]'``.
"""
