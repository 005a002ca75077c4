CREATE TABLE "delivery_attempts" (
	"notification_id" uuid NOT NULL,
	"attempt" smallint NOT NULL,
	"outcome" text NOT NULL,
	"error" text,
	"at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "delivery_attempts_notification_id_attempt_pk" PRIMARY KEY("notification_id","attempt"),
	CONSTRAINT "delivery_attempts_outcome_known" CHECK ("delivery_attempts"."outcome" in ('SENT', 'FAILED'))
);
--> statement-breakpoint
CREATE TABLE "inbox" (
	"consumer" text NOT NULL,
	"event_id" uuid NOT NULL,
	"processed_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "inbox_consumer_event_id_pk" PRIMARY KEY("consumer","event_id")
);
--> statement-breakpoint
CREATE TABLE "notifications" (
	"id" uuid PRIMARY KEY DEFAULT gen_random_uuid() NOT NULL,
	"user_id" uuid NOT NULL,
	"kind" text NOT NULL,
	"channel" text DEFAULT 'EMAIL' NOT NULL,
	"recipient" text DEFAULT '' NOT NULL,
	"subject" text NOT NULL,
	"body" text NOT NULL,
	"order_id" uuid,
	"status" text DEFAULT 'PENDING' NOT NULL,
	"event_id" uuid NOT NULL,
	"created_at" timestamp (3) with time zone DEFAULT now() NOT NULL,
	"sent_at" timestamp with time zone,
	"lease_until" timestamp with time zone,
	CONSTRAINT "notifications_event_id_unique" UNIQUE("event_id"),
	CONSTRAINT "notifications_kind_known" CHECK ("notifications"."kind" in ('WELCOME', 'ORDER_CONFIRMED', 'ORDER_CANCELLED', 'PAYMENT_FAILED', 'PAYMENT_REFUNDED')),
	CONSTRAINT "notifications_status_known" CHECK ("notifications"."status" in ('PENDING', 'SENT', 'FAILED')),
	CONSTRAINT "notifications_channel_known" CHECK ("notifications"."channel" in ('EMAIL'))
);
--> statement-breakpoint
CREATE TABLE "recipients" (
	"user_id" uuid PRIMARY KEY NOT NULL,
	"email" text NOT NULL,
	"display_name" text DEFAULT '' NOT NULL,
	"updated_at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
ALTER TABLE "delivery_attempts" ADD CONSTRAINT "delivery_attempts_notification_id_notifications_id_fk" FOREIGN KEY ("notification_id") REFERENCES "public"."notifications"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
CREATE INDEX "notifications_user_created_id" ON "notifications" USING btree ("user_id","created_at","id");--> statement-breakpoint
CREATE INDEX "notifications_pending_created" ON "notifications" USING btree ("created_at") WHERE "notifications"."status" = 'PENDING';