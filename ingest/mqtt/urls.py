from django.urls import path

from ingest.mqtt import views

app_name = "broker-auth"

# Included under /internal/broker-auth/; <secret> is BROKER_AUTH_SECRET (views.py).
urlpatterns = [
    path("<str:secret>/user", views.broker_user, name="user"),
    path("<str:secret>/vhost", views.broker_vhost, name="vhost"),
    path("<str:secret>/resource", views.broker_resource, name="resource"),
    path("<str:secret>/topic", views.broker_topic, name="topic"),
]
