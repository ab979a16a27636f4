from django.contrib import admin
from django.urls import path

from viral_clips import views

urlpatterns = [
    path("", views.dashboard, name="dashboard"),
    path("run-now/", views.run_now, name="run-now"),
    path("health/", views.health, name="health"),
    path("favicon.ico", views.favicon, name="favicon"),
    path("admin/", admin.site.urls),
]
