import { ApiProperty, ApiPropertyOptional, type ApiPropertyOptions } from '@nestjs/swagger';
import { IsArray } from 'class-validator';
import { dns1123LabelProblem } from '../common/kubernetes-names.js';
import { IsAbsentOr, rule } from '../common/validators.js';
import { labelSelectorProblem, type LabelSelector } from '../common/label-selector.js';

const IsLabelSelector = () => rule('isLabelSelector', labelSelectorProblem);
const IsClusterNames = () =>
  rule('isClusterNames', (v) => {
    if (!Array.isArray(v)) return 'must be an array of cluster names';
    if (v.length > 10_000) return 'must name at most 10000 clusters';
    const bad: unknown = (v as unknown[]).find((n) => typeof n !== 'string' || dns1123LabelProblem(n));
    return bad === undefined
      ? undefined
      : `has an invalid cluster name ${JSON.stringify(typeof bad === 'string' ? bad.slice(0, 80) : bad)}`;
  });

export const LABEL_SELECTOR_SCHEMA: ApiPropertyOptions = {
  type: 'object',
  additionalProperties: true,
  description: 'Kubernetes label selector: matchLabels and/or matchExpressions (In, NotIn, Exists, DoesNotExist)',
  example: { matchLabels: { tier: 'store' }, matchExpressions: [{ key: 'region', operator: 'In', values: ['eu-west', 'eu-north'] }] },
};

export class PublishDto {
  @ApiPropertyOptional({ type: [String], example: ['eu-west-store-0042'], description: 'clusters by name' })
  @IsAbsentOr()
  @IsArray()
  @IsClusterNames()
  clusters?: string[];

  @ApiPropertyOptional({ ...LABEL_SELECTOR_SCHEMA, description: 'and/or every cluster whose labels match (now and later)' })
  @IsAbsentOr()
  @IsLabelSelector()
  selector?: LabelSelector;
}

export class UnpublishDto {
  @ApiPropertyOptional({ type: [String], description: 'only from these clusters; omitted: from every cluster' })
  @IsAbsentOr()
  @IsArray()
  @IsClusterNames()
  clusters?: string[];
}

export class ProjectClusterSelectorDto {
  @ApiProperty({
    ...LABEL_SELECTOR_SCHEMA,
    nullable: true,
    description: 'the clusters the project may publish to; {} allows all, null none',
  })
  // Required, so an empty body is an error rather than a silent "no clusters".
  @rule('isLabelSelectorOrNull', (v) => (v === null ? undefined : labelSelectorProblem(v)))
  selector!: LabelSelector | null;
}

export type DeliveryState = 'pending' | 'provisioned' | 'failed' | 'deprovisioning' | 'deprovisioned';

export class ClusterDeliveryView {
  @ApiProperty({ example: 'eu-west-store-0042' }) cluster!: string;
  @ApiProperty({ enum: ['pending', 'provisioned', 'failed', 'deprovisioning', 'deprovisioned'] }) state!: DeliveryState;
  @ApiProperty({ example: '12', description: 'the cluster generation that carries this app’s current content' }) desiredGeneration!: string;
  @ApiProperty({ example: '12', description: 'the generation the cluster’s agent last applied' }) appliedGeneration!: string;
  @ApiProperty({ nullable: true, type: String, example: 'Conflict: shop/checkout-db' }) reason!: string | null;
  @ApiProperty() since!: Date;
}

export class PublicationSummary {
  @ApiProperty() clusters!: number;
  @ApiProperty() pending!: number;
  @ApiProperty() provisioned!: number;
  @ApiProperty() failed!: number;
  @ApiProperty() deprovisioning!: number;
  @ApiProperty() deprovisioned!: number;
  @ApiProperty({ description: 'nothing pending or deprovisioning' }) converged!: boolean;
}

export class PlacementView {
  @ApiProperty({ type: [String], example: ['store-berlin-01'], description: 'clusters the app was published to by name' })
  clusters!: string[];
  @ApiProperty({
    type: 'array',
    items: { type: 'object', additionalProperties: true },
    example: [{ matchLabels: { tier: 'store' } }],
    description: 'and every cluster matching one of these label selectors, now or when it is labelled later',
  })
  selectors!: LabelSelector[];
  @ApiProperty({ type: [String], description: 'never these (unpublished by name), even when a selector matches' })
  excluded!: string[];
  @ApiProperty({ type: Date, nullable: true, description: 'the last publish or unpublish; null: never published' })
  updatedAt!: Date | null;
}

export class PublicationView {
  @ApiProperty({ example: 'shop' }) project!: string;
  @ApiProperty({ example: 'checkout' }) app!: string;
  @ApiProperty({ type: [String] }) clusters!: string[];
  @ApiProperty({ type: 'array', items: { type: 'object', additionalProperties: true } }) selectors!: LabelSelector[];
  @ApiProperty({ type: [String] }) excluded!: string[];
  @ApiProperty({ type: PublicationSummary }) summary!: PublicationSummary;
  @ApiProperty({ type: [ClusterDeliveryView] }) deliveries!: ClusterDeliveryView[];
}

export const DELIVERY_STATES: readonly DeliveryState[] = ['pending', 'provisioned', 'failed', 'deprovisioning', 'deprovisioned'];

export class DeliverySecretView {
  @ApiProperty({ example: 'checkout-db' }) name!: string;
  @ApiProperty({
    example: 3,
    description: 'the secret’s current version; for a dynamic secret, the serial of this cluster’s active credential (0: none yet)',
  })
  version!: number;
  @ApiProperty({
    description:
      'whether this cluster’s agent applied that version: the cluster’s built snapshot carries it, at a generation the agent ' +
      'acknowledged, and the agent reported no failure for it since. Per-secret acknowledgements are not recorded, so this is ' +
      'derived from the cluster’s applied generation against the generation at which the snapshot row last changed. For a ' +
      'cluster the app is being removed from, true means the cluster still holds it.',
  })
  applied!: boolean;
}

export class FleetDeliveryView {
  @ApiProperty({ example: 'eu-west-store-0042' }) cluster!: string;
  @ApiProperty({ type: 'object', additionalProperties: { type: 'string' }, example: { region: 'eu-west', tier: 'store' } })
  labels!: Record<string, string>;
  @ApiProperty({ enum: DELIVERY_STATES }) state!: DeliveryState;
  @ApiProperty({ example: '12', description: 'the cluster generation that carries this app’s current content' }) desiredGeneration!: string;
  @ApiProperty({ example: '12', description: 'the generation the cluster’s agent last applied' }) appliedGeneration!: string;
  @ApiProperty({ nullable: true, type: String, example: 'Conflict: shop/checkout-db' }) reason!: string | null;
  @ApiProperty({ description: 'when the app’s entry on this cluster last changed (published, unpublished, new content)' }) since!: Date;
  @ApiProperty({ nullable: true, type: Date, description: 'when the cluster’s agent was last heard from' }) lastSeenAt!: Date | null;
  @ApiProperty({ nullable: true, type: String, example: 'sigil-agent/0.1.0' }) agentVersion!: string | null;
  @ApiProperty({ type: [DeliverySecretView], description: 'the app’s secrets, by name: versions only, never values' })
  secrets!: DeliverySecretView[];
}

export class DeliveryPage {
  @ApiProperty({ type: [FleetDeliveryView] }) items!: FleetDeliveryView[];
  @ApiProperty({ nullable: true, type: String, description: 'pass as `after` for the next page; null on the last page' })
  next!: string | null;
  @ApiProperty({ type: PublicationSummary, description: 'the whole app, whatever the filters' }) summary!: PublicationSummary;
}

export class DeliveriesEventData {
  @ApiProperty({ type: [FleetDeliveryView], description: 'the current rows of the clusters that changed (at most 500 per message)' })
  items!: FleetDeliveryView[];
  @ApiProperty({ type: PublicationSummary, description: 'the whole app, read with the rows' }) summary!: PublicationSummary;
}

export class PublishPreview {
  @ApiProperty({ example: 1200, description: 'clusters the publish would deliver the app to (already published ones included)' })
  count!: number;
  @ApiProperty({ type: [String], description: 'the first 50 of them, by name' }) clusters!: string[];
  @ApiProperty({
    type: [String],
    description: 'named clusters that do not exist (publish would answer 404 cluster_not_found)',
  })
  unknown!: string[];
  @ApiProperty({
    example: 3,
    description:
      'clusters the request names or its selector matches that publish would not deliver to: outside the project’s cluster ' +
      'selector (a named one makes publish answer 403 cluster_not_allowed), or matched by the selector but excluded by an earlier unpublish',
  })
  notAllowed!: number;
}
