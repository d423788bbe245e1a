"""Result videos (``video.write_vis_video``, ``video.preview_images``) and the browser 3D viewer
(``viewer.ResultViewer``, ``vipe-dagster visualize``). viser is imported only by the viewer."""
