from django.db import migrations, models
import django.db.models.deletion


class Migration(migrations.Migration):

    dependencies = [
        ('improve', '0003_project_change_task'),
    ]

    operations = [
        migrations.AddField(
            model_name='improvementrun',
            name='change',
            field=models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL,
                                    related_name='+', to='improve.projectchange'),
        ),
    ]
