"""The DataModules of labelled images (``pipeline=noised_classifier``): rendered Shapes scenes or an image folder."""

from __future__ import annotations

from diffexplain.items import image_folder_items, shapes_image_items
from diffexplain.runner.data import ItemDataModule


class ShapesImageDataModule(ItemDataModule):
    """``per_class`` rendered single-object scenes of each of the Shapes world's 12 classes (``classes``: some of
    them, e.g. ``'[red circle, blue square]'``), each with its object's mask; ``seed`` picks the scenes."""

    def __init__(self, per_class: int = 8, seed: int = 0, classes: list[str] | None = None, batch_size: int = 1):
        super().__init__(shapes_image_items(per_class, seed, classes), batch_size)


class ImageFolderDataModule(ItemDataModule):
    """Images under ``root/<class>/`` (any depth below the class folder; the folder name is the class), the first
    ``per_class`` of each class in sorted order (null: all); ``classes`` picks some class folders."""

    def __init__(self, root: str, per_class: int | None = None, classes: list[str] | None = None,
                 batch_size: int = 1):
        super().__init__(image_folder_items(root, per_class, classes), batch_size)


__all__ = ["ImageFolderDataModule", "ShapesImageDataModule"]
