"""Screenshots of the whole window, the VTK pane included.

``QWidget.grab()`` cannot see what OpenGL draws in the native VTK child window (it shows
garbage there, see STACK.md), so the VTK pane is read back with ``vtkWindowToImageFilter`` and
painted over its place in the grabbed window. This works the same under X11, Xvfb and the
offscreen platform.
"""

from __future__ import annotations

from PySide6.QtCore import QPoint, QRect
from PySide6.QtGui import QImage, QPainter
from PySide6.QtWidgets import QWidget


def capture_window(window: QWidget) -> QImage:
    """The window as it looks on screen, as an RGB32 image in device pixels."""
    from fluoroplan.app.view3d import View3D

    image = window.grab().toImage().convertToFormat(QImage.Format.Format_RGB32)
    painter = QPainter(image)  # logical coordinates (the image carries the device pixel ratio)
    for view in window.findChildren(View3D):
        widget = view.vtk_widget
        if not widget.isVisible() or widget.width() <= 0 or widget.height() <= 0:
            continue
        top_left = widget.mapTo(window, QPoint(0, 0))
        painter.drawImage(QRect(top_left, widget.size()), view.capture_qimage())
    painter.end()
    return image
