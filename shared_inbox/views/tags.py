"""Tags on a ticket (agents) and the tag settings page (admins)."""
from __future__ import annotations

from flask import flash, redirect, render_template, request, url_for
from flask_login import current_user

from ..access import get_or_404, get_ticket_or_404, require_admin
from ..extension import get_state
from ..services.tags import (
    TagError, add_tag, clean_color, delete_tag, remove_tag, rename_tag, tags_with_counts,
)


def register(bp):
    def back(t):
        return redirect(url_for(f"{bp.name}.ticket", ticket_id=t.id))

    @bp.route("/tickets/<int:ticket_id>/tags", methods=["POST"])
    def ticket_tag_add(ticket_id):
        state = get_state()
        t = get_ticket_or_404(ticket_id)
        try:
            tag, added = add_tag(t, request.form.get("name", ""),
                                 actor=current_user._get_current_object())
        except TagError as exc:
            state.db.session.rollback()
            flash(str(exc), "error")
            return back(t)
        state.db.session.commit()
        flash(f"Added tag {tag.name}." if added else f"The ticket already has the tag {tag.name}.",
              "success")
        return back(t)

    @bp.route("/tickets/<int:ticket_id>/tags/<int:tag_id>/remove", methods=["POST"])
    def ticket_tag_remove(ticket_id, tag_id):
        state = get_state()
        t = get_ticket_or_404(ticket_id)
        tag = get_or_404("Tag", tag_id)
        if remove_tag(t, tag, actor=current_user._get_current_object()):
            state.db.session.commit()
            flash(f"Removed tag {tag.name}.", "success")
        else:
            flash(f"The ticket does not have the tag {tag.name}.", "info")
        return back(t)

    @bp.route("/settings/tags/")
    def tags_settings():
        require_admin()
        return render_template("shared_inbox/tags.html", tags=tags_with_counts(), errors={},
                               typed={})

    @bp.route("/settings/tags/<int:tag_id>", methods=["POST"])
    def tag_edit(tag_id):
        """Rename (onto an existing name: merge into that tag) and recolour."""
        require_admin()
        state = get_state()
        tag = get_or_404("Tag", tag_id)
        old_name = tag.name
        errors = {}
        color = None
        try:
            color = clean_color(request.form.get("color", tag.color))
        except TagError as exc:
            errors["color"] = str(exc)
        name = request.form.get("name", tag.name)
        if not errors:
            try:
                survivor = rename_tag(tag, name)
            except TagError as exc:
                errors["name"] = str(exc)
        if errors:
            state.db.session.rollback()
            return render_template(
                "shared_inbox/tags.html", tags=tags_with_counts(),
                errors={tag_id: errors}, typed={tag_id: {
                    "name": request.form.get("name", ""), "color": request.form.get("color", "")}},
            ), 400
        if survivor is tag:
            tag.color = color
            message = (f"Tag {old_name} renamed to {tag.name}." if tag.name != old_name
                       else f"Tag {tag.name} saved.")
        else:
            message = f"Tag {old_name} merged into {survivor.name}."
        state.db.session.commit()
        flash(message, "success")
        return redirect(url_for(f"{bp.name}.tags_settings"))

    @bp.route("/settings/tags/<int:tag_id>/delete", methods=["POST"])
    def tag_delete(tag_id):
        require_admin()
        state = get_state()
        tag = get_or_404("Tag", tag_id)
        name = tag.name
        delete_tag(tag)
        state.db.session.commit()
        flash(f"Tag {name} deleted.", "success")
        return redirect(url_for(f"{bp.name}.tags_settings"))
