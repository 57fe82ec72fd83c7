from django.db import migrations, models
from django.db.models import Count, OuterRef, Subquery
from django.db.models.functions import Coalesce


def count_messages(apps, schema_editor):
    Session = apps.get_model("sessions_app", "Session")
    Message = apps.get_model("chat", "Message")
    counts = (
        Message.objects.filter(session=OuterRef("pk"))
        .order_by()
        .values("session")
        .annotate(total=Count("pk"))
        .values("total")
    )
    Session.objects.update(
        message_count=Coalesce(Subquery(counts, output_field=models.IntegerField()), 0)
    )


class Migration(migrations.Migration):
    dependencies = [
        ("sessions_app", "0002_session_history_epoch"),
        ("chat", "0001_initial"),
    ]

    operations = [
        migrations.AddField(
            model_name="session",
            name="message_count",
            field=models.PositiveIntegerField(default=0),
        ),
        # Sessions from before keep their counts; from now on the history's writes keep them.
        migrations.RunPython(count_messages, migrations.RunPython.noop),
    ]
