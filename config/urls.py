from django.contrib import admin
from django.urls import path

from viral_clips import views

urlpatterns = [
    path("", views.dashboard, name="dashboard"),
    path("run-now/", views.run_now, name="run-now"),
    path("jobs/<str:entry>/run/", views.run_job, name="job-run"),
    path("jobs/<str:entry>/pause/", views.pause_job, name="job-pause"),
    path("jobs/<str:entry>/resume/", views.resume_job, name="job-resume"),
    path("jobs/<str:entry>/stop/", views.stop_job, name="job-stop"),
    path("health/", views.health, name="health"),
    path("favicon.ico", views.favicon, name="favicon"),
    path("admin/", admin.site.urls),
]
